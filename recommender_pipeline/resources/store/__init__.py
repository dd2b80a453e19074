"""The measurement store: DuckDB by default, PostgreSQL when `MEASUREMENT_STORE_URL` names one.

`resource.py` is the Dagster resource and the SQL both engines share; `sessions.py` what differs
per engine; `schema.py` the tables; `frames.py` the typed conversions.
"""

from recommender_pipeline.measuring.measurement import MEASUREMENT_COLUMNS
from recommender_pipeline.resources.store.resource import MeasurementStoreResource
from recommender_pipeline.resources.store.schema import INVENTORY_COLUMNS

__all__ = ["INVENTORY_COLUMNS", "MEASUREMENT_COLUMNS", "MeasurementStoreResource"]
