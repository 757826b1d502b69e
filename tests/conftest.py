import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before any test module imports dm_control


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first: with ``--dist loadfile`` their files go out first,
    so that none starts last and runs alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
