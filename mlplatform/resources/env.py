"""Settings that come from the environment: Dagster `EnvVar`s, resolved inside and outside runs.

Inside a run Dagster hands resources their resolved values; outside one (the CLI, the prediction API,
a test) a field still holds the `EnvVar`, and these helpers resolve or reference it.
"""

from dagster import EnvVar
from dagster._config.field_utils import IntEnvVar


def resolved(value):
    """The value of a config field: an `EnvVar` read from the environment (an error when unset)."""
    if isinstance(value, EnvVar | IntEnvVar):
        found = value.get_value()
        if found is None:
            raise KeyError(f"environment variable {value.env_var_name} is not set")
        return int(found) if isinstance(value, IntEnvVar) else found
    return value


def yaml_reference(value) -> str:
    """How a field is written into a config file read by another tool: `${NAME}` for an `EnvVar`
    (Feast expands it when it loads the file, so no secret is ever written), else the value itself."""
    if isinstance(value, EnvVar | IntEnvVar):
        return f"${{{value.env_var_name}}}"
    return str(value)
