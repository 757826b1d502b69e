import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before any test module imports dm_control
