"""How a stored value is read wherever it is used: a NULL (None, NaN or pandas' NA: a row from
before the column existed, or a number nobody observed) is unknown, never zero or False."""

import pandas as pd


def known(value: object) -> bool:
    """Whether a stored value was observed (not None, NaN or NA)."""
    return value is not None and not pd.isna(value)


def stored_flag(value: object) -> bool:
    """A stored boolean, NULL as False."""
    return False if pd.isna(value) else bool(value)
