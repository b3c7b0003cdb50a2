"""Settings of the prediction API that differ per deployment."""

from dagster import ConfigurableResource


class ServingSettings(ConfigurableResource):
    """Where the routing policy lives and how often the API re-reads the registry aliases."""

    routing_file: str
    reload_seconds: float = 5.0
