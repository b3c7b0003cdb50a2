"""Pod sizes per asset on Kubernetes, as `dagster-k8s/config` op tags.

The tags are read by `k8s_job_executor`, which runs each step in its own pod: a training step can ask
for 8 GiB without every ingestion step reserving the same. Outside Kubernetes they are inert.
"""

import json

# dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY, spelled out: importing dagster_k8s (and the kubernetes
# client) would add seconds to every load of the code location, on Kubernetes or not
USER_DEFINED_K8S_CONFIG_KEY = "dagster-k8s/config"


def k8s_config_tags(
    cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str
) -> dict[str, str]:
    """The op tags that give a step's pod these requests and limits (Kubernetes quantities)."""
    resources = {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }
    return {USER_DEFINED_K8S_CONFIG_KEY: json.dumps({"container_config": {"resources": resources}})}


# Memory requests equal limits: a step is never OOM-killed for using what it was promised.
# Figures from the benchmarks on ~1M transactions (README): peak RSS per step plus headroom.
# ingestion: 0.9 GB to ingest and validate every partition in one process
INGESTION = k8s_config_tags(cpu_request="500m", memory_request="2Gi", cpu_limit="1", memory_limit="2Gi")
# dbt build: 0.9 GB for dbt plus the step process that drives it
TRANSFORM = k8s_config_tags(cpu_request="500m", memory_request="2Gi", cpu_limit="2", memory_limit="2Gi")
# training_set peaks at 5.7 GB (Feast point-in-time retrieval); fraud_model fits with one thread by default
TRAINING = k8s_config_tags(cpu_request="1", memory_request="8Gi", cpu_limit="2", memory_limit="8Gi")
