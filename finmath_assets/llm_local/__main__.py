import sys

from finmath_assets.llm_local.cli import main

sys.exit(main())
