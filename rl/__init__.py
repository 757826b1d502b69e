"""SAC with a genome-driven auxiliary loss on the DeepMind Control Suite."""
import os

# Headless rendering: dm_control picks its GL backend when first imported, so this must run
# before anything imports it (GLFW, its default, needs a display).
os.environ.setdefault("MUJOCO_GL", "egl")
