"""Connecting to Ray: an embedded local instance, or a cluster joined with ``--address``.

Workers get this project's code through Ray's runtime environment (``py_modules``: the
``spaces``, ``rl`` and ``search`` packages, zipped and uploaded once per session), so a
cluster needs no shared filesystem and no copy of the repository on its nodes; only the
third-party packages (torch, dm_control, ray, ...) must be installed there.

The embedded instance (no ``--address``) serves this machine only: its servers listen on
the loopback (Ray's ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, see :func:`_loopback_only`),
no dashboard is started, and Ray's token authentication stays on (its default: a token in
``~/.ray/auth_token``, made on first use). Nothing here switches authentication off.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Iterator

from search.runs.config import DispatchConfig, DispatchError

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("spaces", "rl", "search")   # what the workers import, shipped with each session

# Ray and Tune stay silent: the commands print their own progress line (search/runs/display.py).
QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",            # the legacy output honours verbose=0 (no tables)
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",   # our display reports failures, in one line
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial CSV/JSON/TensorBoard files
    "RAY_DEDUP_LOGS": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TOKEN_SOURCES = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"


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


def runtime_env() -> dict:
    """The job's runtime environment: this project's packages and the settings a worker
    needs (headless rendering, quiet Ray) for every trial, on any node."""
    env_vars = {key: os.environ[key] for key in QUIET_ENV if key in os.environ}
    env_vars["MUJOCO_GL"] = os.environ.get("MUJOCO_GL", "egl")
    return {"py_modules": [str(REPO_ROOT / name) for name in PACKAGES],
            "excludes": ["__pycache__", "*.pyc"], "env_vars": env_vars}


def init_ray(dispatch: DispatchConfig, quiet: bool = True) -> str:
    """Start (or join) Ray once; returns a one-line description for the progress display.

    Raises DispatchError (one line naming --address) when a cluster cannot be joined."""
    if quiet:
        quiet_ray()
    import ray

    if ray.is_initialized():
        return "ray: already initialised"
    common = dict(runtime_env=runtime_env(), log_to_driver=not quiet,
                  logging_level=logging.ERROR if quiet else logging.INFO)
    if dispatch.address:
        line = _join(dispatch.address, common)
    else:
        cpus = dispatch.num_cpus or local_cpus()
        with _loopback_only():
            context = ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                               object_store_memory=256 * 2**20, **common)
        line = (f"ray: embedded local instance at {context.address_info['gcs_address']} "
                f"(loopback only, token authentication on, no dashboard), {cpus} CPUs, "
                f"{_gpus():g} GPUs")
    if quiet:
        quiet_ray()  # ray.init configures its loggers; ours must win
    _sigterm_as_sigint()
    return line


_SIGTERM_BEFORE: list = []


def _sigterm_as_sigint() -> None:
    """SIGTERM (a batch scheduler's stop, ``kill``) stops the driver as Ctrl-C does: Tune
    ends its trials, the run folder keeps every result, the command says how to resume.
    Installed after ``ray.init``, whose core worker otherwise answers SIGTERM with a
    stack dump. :func:`shutdown` puts the handler before it back."""
    import threading

    if threading.current_thread() is not threading.main_thread() or _SIGTERM_BEFORE:
        return
    _SIGTERM_BEFORE.append(signal.signal(signal.SIGTERM,
                                         lambda *_: os.kill(os.getpid(), signal.SIGINT)))


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Ray's own switch for a machine that runs local Ray only (its default on macOS and
    Windows): with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` the node's address is the
    loopback, so the GCS, the raylet, the workers and the runtime-env agent listen on
    127.0.0.1 alone (Ray binds its servers to the node's address since ray-project/ray
    #55484; without it they listen on every interface). Ray reads the variable once, into
    ``ray_constants.ENABLE_RAY_CLUSTER``, when it is imported, which the driver has done by
    now: both are set for the start of the instance (its processes inherit the variable)
    and restored after, so a later ``--address`` join in this process is not affected."""
    from ray._private import ray_constants

    before_env, before = os.environ.get(LOOPBACK_ONLY), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ONLY] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(LOOPBACK_ONLY, None)
        else:
            os.environ[LOOPBACK_ONLY] = before_env


def token_source() -> str | None:
    """Where a Ray auth token would come from in this process, or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH={path}" if Path(path).is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _join(address: str, common: dict) -> str:
    import ray

    _probe(address)
    source = token_source()
    if source and "RAY_AUTH_MODE" not in os.environ:
        # What Ray itself does for ``address="auto"`` (and not for an explicit address):
        # send the token this machine has.
        os.environ["RAY_AUTH_MODE"] = "token"
        _refresh_auth_mode()
    with _stderr_captured() as said:
        try:
            ray.init(address=address, **common)
            err = None
        except Exception as caught:  # ConnectionError, AuthenticationError, RuntimeError, ...
            err = caught
    if err is not None:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        refused = "InvalidAuthToken" in said() or "Unauthenticated" in said()
        if os.environ.get("RAY_AUTH_MODE") == "token" and source is None:
            why = f"RAY_AUTH_MODE=token but no token was found (give it with {TOKEN_SOURCES})"
        elif source is None:
            why = (f"{'the cluster refused a driver without its token' if refused else first}; "
                   f"no Ray auth token was found here ({TOKEN_SOURCES})")
        elif refused:
            why = f"the cluster refused the token from {source} (not the cluster's own)"
        else:
            why = (f"{first}; the token sent came from {source}: if the cluster uses token "
                   f"authentication, it must be the cluster's own")
        raise DispatchError(f"cannot join the Ray cluster at {address}: {why}", "address") from None
    res = ray.cluster_resources()
    auth = "token authentication" if os.environ.get("RAY_AUTH_MODE") == "token" else "no token"
    return (f"ray: joined cluster at {address} ({len(ray.nodes())} nodes, {res.get('CPU', 0):g} "
            f"CPUs, {res.get('GPU', 0):g} GPUs, {auth}); code shipped as py_modules")


@contextlib.contextmanager
def _stderr_captured() -> Iterator:
    """Ray's C++ client logs each refused connection attempt to the process's stderr (file
    descriptor 2, below Python's logging): keep those lines out of the user's terminal, and
    let the caller read them (``said()``) to tell a refused token from a silent cluster."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        text: list[str] = []

        def said() -> str:
            return text[0] if text else ""
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def _refresh_auth_mode() -> None:
    """Ray caches its config, auth mode included, in C++; re-read it from the environment
    (what ray._private.authentication does when it enables token mode itself)."""
    try:
        from ray._raylet import Config
    except ImportError:
        return
    Config.initialize("")


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable ``host:port``: ray.init would retry for minutes."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise DispatchError(f"no Ray cluster answers at {address} ({err})", "address") from None


def _gpus() -> float:
    import ray
    return ray.cluster_resources().get("GPU", 0)


def concurrency(dispatch: DispatchConfig) -> int:
    """How many trials the connected cluster holds at once; DispatchError if none fits."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    if dispatch.cpus_per_trial > cpus:
        raise DispatchError(f"{dispatch.cpus_per_trial:g} is more than the {cpus:g} CPUs of the "
                            f"Ray cluster", "cpus_per_trial")
    slots = int(cpus // dispatch.cpus_per_trial + 1e-9)
    if dispatch.gpus_per_trial > 0:
        if dispatch.gpus_per_trial > gpus:
            raise DispatchError(f"{dispatch.gpus_per_trial:g} but the Ray cluster has {gpus:g} "
                                f"GPUs", "gpus_per_trial")
        slots = min(slots, int(gpus // dispatch.gpus_per_trial + 1e-9))
    return max(1, min(slots, dispatch.max_concurrent or slots))


def is_connected() -> bool:
    import ray
    return ray.is_initialized()


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _restore_sigterm()


def _restore_sigterm() -> None:
    if _SIGTERM_BEFORE:
        signal.signal(signal.SIGTERM, _SIGTERM_BEFORE.pop() or signal.SIG_DFL)
