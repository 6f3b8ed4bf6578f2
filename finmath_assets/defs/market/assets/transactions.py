"""The synthetic card-transaction feed: one dynamic partition per landed file.

The `transaction_files` sensor adds a partition for each new file and requests it; a run
validates that file against `CardTransaction` and replaces its rows (``partition_expr`` is the
file name), quarantining every bad row with its reasons.
"""

import dagster as dg
import pandas as pd

from finmath_assets.core.market.quarantine import file_rejection, rows_of
from finmath_assets.core.market.transactions import (
    read_transaction_file,
    transaction_file_day,
    typed_transactions,
    validate_transactions,
)
from finmath_assets.defs.constants import DUCKDB_POOL, MARKET_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.market.partitions import TRANSACTION_FILES
from finmath_assets.defs.resources import MarketFeedsResource

GROUP = "transactions"


@dg.multi_asset(
    outs={
        "card_transactions": dg.AssetOut(
            key_prefix=MARKET_PREFIX,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            metadata={"partition_expr": "source_file"},
            kinds={"duckdb", "pydantic"},
            description="Validated card transactions (`CardTransaction`, timestamps in UTC), "
            "with the landed file each came from.",
        ),
        "rejected_card_transactions": dg.AssetOut(
            key_prefix=MARKET_PREFIX,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            metadata={"partition_expr": "source_file"},
            kinds={"duckdb", "pydantic"},
            description="Quarantine: every transaction row (or whole file) that failed "
            "validation, with its raw payload and every reason.",
        ),
    },
    group_name=GROUP,
    partitions_def=TRANSACTION_FILES,
    pool=DUCKDB_POOL,
)
def ingest_card_transactions(context: dg.AssetExecutionContext, market_feeds: MarketFeedsResource):
    name = context.partition_key
    path = market_feeds.transactions_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is gone: the partition {name!r} was added for a file that no longer exists "
            "in the landing folder (restore it, or delete the partition in the UI)"
        )
    try:
        result = validate_transactions(
            rows_of(read_transaction_file(path), name), expected_date=transaction_file_day(path)
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        result = file_rejection(name, str(error))
        result.valid = typed_transactions(pd.DataFrame())
    valid = result.valid.copy()
    valid.insert(0, "source_file", pd.Series(name, index=valid.index, dtype="string"))
    rejected = result.rejected.copy()
    rejected.insert(0, "source_file", pd.Series(name, index=rejected.index, dtype="string"))
    context.log.info(f"{name}: {len(valid)} transactions, {len(rejected)} rejected")
    yield dg.Output(
        valid,
        output_name="card_transactions",
        metadata={"amount_total": round(float(valid["amount"].sum()), 2)},
    )
    yield dg.Output(
        rejected,
        output_name="rejected_card_transactions",
        metadata={"reject_rate": round(result.reject_rate, 6)},
    )
