import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # before any test module imports dm_control
# One torch thread in the test processes and the programs they start (train.py): two tests
# run side by side on the 2-core machine, and a second thread only spins there (a pixel
# README command took 36 s of CPU with two threads, 13 s with one). Ray sets its workers'.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first: with ``--dist loadfile`` their files go out first,
    so that none starts last and runs alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _ensure_ray() -> None:
    import ray

    from search.runs.cluster import init_ray
    from search.runs.config import DispatchConfig

    if not ray.is_initialized():
        init_ray(DispatchConfig(num_cpus=2))


@pytest.fixture
def ray_instance():
    """The embedded Ray instance (2 CPUs) that this test process's in-process commands
    find and leave up (``cluster.is_connected``): started when a test first needs it, and
    kept for the next (``ray.init`` and its shutdown take ~8 s here). Tests of the embedded
    instance itself, and of ``--address``, start their own in a subprocess."""
    _ensure_ray()
    yield


@pytest.fixture(scope="module")
def ray_instance_for_module():
    """:func:`ray_instance` for module-scoped fixtures."""
    _ensure_ray()
    yield


def pytest_sessionfinish(session, exitstatus):
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        from search.runs.cluster import shutdown

        shutdown()
