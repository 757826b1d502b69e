"""Connecting to Ray: an embedded local instance sized to this machine, or a cluster."""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Ray and Tune stay silent: the search prints its own progress line (search/display.py).
QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",            # the legacy output honours verbose=0 (no tables)
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",   # our display reports failures, in one line
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial CSV/JSON/TensorBoard files
    "RAY_DEDUP_LOGS": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}


class ClusterError(ValueError):
    """The Ray cluster cannot be joined or cannot hold a candidate; one line for the user."""


def quiet_ray() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in ("ray", "ray.tune", "ray.train", "ray.air", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    silence_raylet_notices()


def silence_raylet_notices() -> None:
    """Ray 2.60 prints the raylet's worker-death notices straight to the driver's stdout
    (``ray._private.worker.listen_error_messages``; no setting turns them off). A killed
    worker is a trial failure that Tune retries and our display reports in one line, so
    drop those notices. Private API: if it moves, the notices are merely printed again."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_a2ls_quiet", False):
        return

    def print_unless_raylet(data, *args, **kwargs):
        if isinstance(data, dict) and data.get("pid") == "raylet":
            return None
        return original(data, *args, **kwargs)

    print_unless_raylet._a2ls_quiet = True
    ray_worker.print_to_stdstream = print_unless_raylet


def local_cpus() -> int:
    """CPUs this process may use (cgroup/affinity aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> str:
    """Start (or join) Ray once. ``address=None`` embeds a local instance without dashboard.

    Workers must import this project: locally they inherit PYTHONPATH from this process; on
    a cluster they get it through the runtime environment (the repository must then be at
    the same path on every node, e.g. a shared filesystem).

    Returns a one-line description of what was started, for the progress display.
    Raises ClusterError (one line naming --address) when a cluster cannot be joined.
    """
    if quiet:
        quiet_ray()
    import ray

    if ray.is_initialized():
        return "ray: already initialised"
    path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
    level = logging.ERROR if quiet else logging.INFO
    if address:
        _probe(address)
        env = {"PYTHONPATH": os.environ["PYTHONPATH"]}
        try:
            ray.init(address=address, log_to_driver=not quiet, logging_level=level,
                     runtime_env={"env_vars": env})
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            hint = ""
            if "RAY_AUTH_MODE" not in os.environ and address != "auto":
                # Ray sends its auth token only to clusters it found itself (address auto).
                hint = ("; if the cluster uses token authentication (Ray's default), set "
                        "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token), or "
                        "use --address auto on the head node")
            raise ClusterError(f"--address: cannot join the Ray cluster at {address}: "
                               f"{first}{hint}") from None
        if quiet:
            quiet_ray()
        res = ray.cluster_resources()
        return (f"ray: joined cluster at {address} ({res.get('CPU', 0):g} CPUs, "
                f"{res.get('GPU', 0):g} GPUs)")
    cpus = num_cpus or local_cpus()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             object_store_memory=256 * 2**20, log_to_driver=not quiet, logging_level=level)
    if quiet:
        quiet_ray()  # ray.init configures its loggers; ours must win
    return f"ray: embedded local instance, {cpus} CPUs, {_gpus():g} GPUs"


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable ``host:port``: ray.init would retry for minutes."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ClusterError(f"--address: no Ray cluster answers at {address} ({err})") from None


def _gpus() -> float:
    import ray
    return ray.cluster_resources().get("GPU", 0)
