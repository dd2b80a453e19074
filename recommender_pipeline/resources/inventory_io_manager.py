"""`cluster_inventory` kept in the measurement store's inventory table, and nowhere else."""

import dagster as dg
import pandas as pd

from recommender_pipeline.resources.store import MeasurementStoreResource


class InventoryIOManager(dg.ConfigurableIOManager):
    """Stores the inventory asset's output in the store and loads it from there, so the steps
    downstream, the one command and the schedules all read the same rows (a pickle beside the
    table could disagree with it)."""

    store: dg.ResourceDependency[MeasurementStoreResource]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        # The clusters that could not be listed keep their last known topics (`attrs` travels
        # with the frame from the asset to here, in the same step).
        self.store.replace_inventory(obj, keep_clusters=obj.attrs.get("failed_clusters", []))
        context.add_output_metadata({"store": self.store.location})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return self.store.read_inventory()
