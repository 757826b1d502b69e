"""Connecting to Ray: an embedded local instance sized to this machine, or a cluster."""
from __future__ import annotations

import os


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Start (or join) Ray once. ``address=None`` embeds a local instance without dashboard.

    Returns a one-line description of what was started, for the progress display.
    """
    import ray

    if ray.is_initialized():
        return "ray: already initialised"
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        ray.init(address=address, log_to_driver=not quiet)
        return f"ray: joined cluster at {address} ({ray.cluster_resources().get('CPU', 0):.0f} CPUs)"
    cpus = num_cpus or os.cpu_count() or 1
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             object_store_memory=256 * 2**20, log_to_driver=not quiet)
    return f"ray: embedded local instance, {cpus} CPUs, {_gpus()} GPUs"


def _gpus() -> int:
    import ray
    return int(ray.cluster_resources().get("GPU", 0))
