"""The validated configuration as a resource, read once per step process."""

import dagster as dg
from pydantic import PrivateAttr

from recommender_pipeline.settings import Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """Reads the original tool's variables from the environment and `env_file`.

    Nothing secret lives in the resource's own config, so run config and the event log never
    carry a credential; the values stay in this process's memory.
    """

    env_file: str = ".env"
    _settings: Settings | None = PrivateAttr(default=None)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.env_file)
        return self._settings
