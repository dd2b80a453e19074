"""Frames and rows between pandas and the two engines: typed by the declared columns, so both
engines return the same frame and big integers next to NULLs stay exact."""

from typing import Any

import numpy as np
import pandas as pd

from recommender_pipeline.resources.store.schema import READ_DTYPES


def incoming_frame(columns: dict[str, list], declared: dict[str, str]) -> pd.DataFrame:
    """Values to write, typed by their declared columns: integers and booleans as pandas'
    nullable dtypes, so that big integers next to NULLs stay exact (a plain frame would make such
    a column float), and dates as ISO strings. A column that does not convert is left as it is,
    to the engine's own casts."""
    data: dict[str, Any] = {}
    for name, kind in declared.items():
        values = columns[name]
        data[name] = values
        try:
            if kind == "DATE":
                data[name] = [None if is_null(v) else pd.Timestamp(v).date().isoformat() for v in values]
            elif kind in READ_DTYPES:
                data[name] = pd.array(values, dtype=READ_DTYPES[kind][1])
        except (TypeError, ValueError):
            pass
    return pd.DataFrame(data, columns=list(declared))


def is_null(value: Any) -> bool:
    return value is None or (not isinstance(value, str | bytes) and bool(pd.isna(value)))


def result_frame(columns: list[str], rows: list[tuple], declared: dict[str, str]) -> pd.DataFrame:
    """A query's rows as the frame DuckDB's `df()` makes of them, for either engine."""
    data: dict[str, Any] = {}
    for index, name in enumerate(columns):
        values = [row[index] for row in rows]
        kind = declared.get(name)
        has_null = any(v is None for v in values)
        if kind == "DATE":
            data[name] = pd.Series([str(v) for v in values], dtype=str)
        elif kind in READ_DTYPES:
            numpy_dtype, nullable_dtype = READ_DTYPES[kind]
            data[name] = pd.array(values, dtype=nullable_dtype) if has_null else np.array(values, dtype=numpy_dtype)
        elif kind == "DOUBLE":
            data[name] = np.array([np.nan if v is None else v for v in values], dtype="float64")
        elif kind == "VARCHAR" and values and not all(v is None for v in values):
            data[name] = pd.Series(values, dtype=str)
        else:
            data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data, columns=columns)


def driver_records(frame: pd.DataFrame, declared: dict[str, str]) -> list[dict[str, Any]]:
    """A frame's rows as plain Python values for a driver: NULL as None, dates as dates."""
    names = list(frame.columns)
    dates = {name for name in names if declared.get(name) == "DATE"}

    def plain(name: str, value: Any) -> Any:
        if is_null(value):
            return None
        if name in dates:
            return pd.Timestamp(value).date()
        return value.item() if isinstance(value, np.generic) else value

    return [
        {name: plain(name, value) for name, value in zip(names, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]
