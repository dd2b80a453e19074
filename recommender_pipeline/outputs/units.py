"""Bytes and rates as a person reads them, in binary units (KiB, MiB): one unit system for the
HTML report, the terminal digest, the UI's table and the topic-day metadata."""

from recommender_pipeline.values import known


def rate(value: object) -> str:
    """Bytes per second as a person reads it (B/s, KiB/s, MiB/s); empty when unknown."""
    if not known(value):
        return ""
    number = float(value)
    for unit, size in (("MiB/s", 1024**2), ("KiB/s", 1024)):
        if abs(number) >= size:
            return f"{number / size:,.2f} {unit}"
    return f"{number:,.1f} B/s"


def amount(value: object) -> str:
    """Bytes as a person reads them; empty when unknown."""
    if not known(value):
        return ""
    number = float(value)
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(number) >= size:
            return f"{number / size:,.2f} {unit}"
    return f"{number:,.0f} B"
