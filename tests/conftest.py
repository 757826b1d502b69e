import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before any test module imports dm_control
# One torch thread in the test processes and the programs they start (train.py): two tests
# run side by side on the 2-core machine, and a second thread only spins there (a pixel
# README command took 36 s of CPU with two threads, 13 s with one). Ray sets its workers'.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first: with ``--dist loadfile`` their files go out first,
    so that none starts last and runs alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
