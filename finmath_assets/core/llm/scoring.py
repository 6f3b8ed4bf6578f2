"""FinanceMath's scoring (placeholder: being ported by a helper; the signatures are fixed)."""

from __future__ import annotations


def extract_program(output: str) -> str:
    """The program in a PoT completion: the first ```python block, else the whole text."""
    marker = "```python"
    if marker in output:
        return output.split(marker, 1)[1].split("```", 1)[0]
    return output
