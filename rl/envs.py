"""DeepMind Control tasks behind one small env class (does the job of dmc2gym, SPEC section 6).

What the released A2LS code got from dmc2gym, re-done on dm_control directly:
- task names as A2LS writes them (``cheetah_run``, ``ball_in_cup_catch``): :func:`parse_task`;
- actions in [-1, 1], rescaled linearly to the task's bounds;
- action repeat with summed rewards, stopping early if the episode ends;
- state observations: the observation dict flattened in the task's own key order (as dmc2gym
  does), float32; pixel observations: one ``physics.render`` per *agent* step, after the last
  repeated physics step (never per physics step), uint8 CHW, ``frame_stack`` frames stacked on
  the channel axis, oldest first; a reset fills the stack with copies of the first frame;
- a time limit of 1000 physics steps, i.e. ``ceil(1000 / action_repeat)`` agent steps, as
  dmc2gym's gym TimeLimit (every suite task but ``lqr`` also ends there by itself).

Unlike the released code, a time-limit end is *not* a terminal state: ``terminal`` is True only
when dm_control ends an episode with discount 0 (SPEC defect 2).

Rendering: ``MUJOCO_GL`` is set to ``egl`` unless the user set it, before dm_control is
imported (it reads the variable once, at import). On GPU nodes EGL renders on the GPU; on CPU
machines Mesa's llvmpipe provides EGL (tested here). OSMesa is not installed on these
machines, so there is no silent fallback; set ``MUJOCO_GL=osmesa`` yourself where it is.
If something imported dm_control before this module with ``MUJOCO_GL`` unset, dm_control has
picked GLFW, which needs an X display: a pixel env then fails at once with a clear message.

Camera: 0 for every domain (dmc2gym's default, so A2LS's pixels), except ``quadruped``, whose
camera 0 is a far (10 m) global view in which the robot is tiny: camera 2 (``y``, a closer
tracking camera), as DrQ-v2 does. A2LS never trained quadruped from pixels.
"""
from __future__ import annotations

import collections
import difflib
import math
import os
from collections.abc import Mapping

os.environ.setdefault("MUJOCO_GL", "egl")  # must precede the dm_control import

import numpy as np  # noqa: E402
from dm_control import _render, suite  # noqa: E402

EPISODE_PHYSICS_STEPS = 1000
CAMERA_IDS = {"quadruped": 2}  # domain -> camera id; 0 otherwise
_UNBOUNDED = 1e6  # action bounds beyond this (lqr: 1e10) are treated as "no bound": no rescaling

_DOMAINS = sorted({domain for domain, _ in suite.ALL_TASKS}, key=len, reverse=True)
_TASKS = frozenset(suite.ALL_TASKS)
TASK_NAMES = tuple(f"{domain}_{task}" for domain, task in suite.ALL_TASKS)


def parse_task(name: str) -> tuple[str, str]:
    """Split an A2LS task name into (domain, task): ``ball_in_cup_catch`` -> (``ball_in_cup``,
    ``catch``). Domains are matched longest first, so ``humanoid_CMU_run`` is ``humanoid_CMU``.

    Raises:
        ValueError: one line naming ``--domain_name``, with a few close matches.
    """
    for domain in _DOMAINS:  # longest first
        prefix = domain + "_"
        if name.startswith(prefix) and (domain, name[len(prefix):]) in _TASKS:
            return domain, name[len(prefix):]
    close = difflib.get_close_matches(name, TASK_NAMES, n=5, cutoff=0.5)
    hint = ", ".join(close) if close else ", ".join(TASK_NAMES[:5]) + ", ..."
    label = "did you mean" if close else "known"
    raise ValueError(f"--domain_name: unknown task {name!r} ({label}: {hint})")


def _flatten(observation: Mapping) -> np.ndarray:
    # dm_control returns an OrderedDict in the task's key order; scalars have shape ().
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])


class DMCEnv:
    """One dm_control task with action repeat, [-1, 1] actions and (for pixels) a frame stack.

    Use :func:`make_env`. ``step`` returns ``(obs, reward, episode_over, terminal)``; call
    ``reset`` after ``episode_over``.
    """

    def __init__(self, domain: str, task: str, *, from_pixels: bool, image_size: int,
                 action_repeat: int, frame_stack: int, seed: int):
        if action_repeat < 1:
            raise ValueError(f"--action_repeat: must be >= 1, got {action_repeat}")
        if from_pixels and (image_size < 1 or frame_stack < 1):
            raise ValueError(f"--image_size/--frame_stack: must be >= 1, got {image_size}/{frame_stack}")
        if seed < 0:
            raise ValueError(f"--seed: the environment needs a seed >= 0, got {seed}")
        if from_pixels and _render.BACKEND == "glfw" and not os.environ.get("DISPLAY"):
            raise RuntimeError("dm_control chose the GLFW renderer, which needs a display: it was "
                               "imported before rl.envs with MUJOCO_GL unset; set MUJOCO_GL=egl")
        self._env = suite.load(domain, task, task_kwargs={"random": seed},
                               visualize_reward=False)
        self.domain, self.task = domain, task
        self.from_pixels = from_pixels
        self.image_size = image_size
        self.action_repeat = action_repeat
        # States are never stacked (A2LS stacks pixels only).
        self.frame_stack = frame_stack if from_pixels else 1
        self.camera_id = CAMERA_IDS.get(domain, 0)
        self.max_episode_steps = math.ceil(EPISODE_PHYSICS_STEPS / action_repeat)
        self._rng = np.random.default_rng(seed)  # sample_action only; the task has its own

        spec = self._env.action_spec()
        self.action_dim = int(np.prod(spec.shape))
        low, high = (np.broadcast_to(b, spec.shape).astype(np.float64).ravel()
                     for b in (spec.minimum, spec.maximum))
        bounded = (np.abs(low) < _UNBOUNDED) & (np.abs(high) < _UNBOUNDED)
        self._act_scale = np.where(bounded, (high - low) / 2.0, 1.0)
        self._act_shift = np.where(bounded, (high + low) / 2.0, 0.0)
        self._act_shape, self._act_dtype = spec.shape, spec.dtype

        if from_pixels:
            self.frame_shape: tuple[int, ...] = (3, image_size, image_size)
            self.frame_dtype = np.dtype(np.uint8)
        else:
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.frame_shape = (dim,)
            self.frame_dtype = np.dtype(np.float32)
        self.observation_shape: tuple[int, ...] = (
            (self.frame_shape[0] * self.frame_stack, *self.frame_shape[1:]))
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=self.frame_stack)
        self._steps = 0
        self._over = True

    def _frame(self, timestep) -> np.ndarray:
        if not self.from_pixels:
            return _flatten(timestep.observation)
        image = self._env.physics.render(self.image_size, self.image_size, camera_id=self.camera_id)
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def _obs(self) -> np.ndarray:
        return np.concatenate(self._frames, axis=0)  # a fresh array: callers may keep it

    def reset(self) -> np.ndarray:
        frame = self._frame(self._env.reset())
        for _ in range(self.frame_stack):
            self._frames.append(frame)
        self._steps, self._over = 0, False
        return self._obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        if self._over:
            raise RuntimeError("DMCEnv.step after the episode ended: call reset() first")
        action = np.clip(np.asarray(action, dtype=np.float64).ravel(), -1.0, 1.0)
        scaled = (action * self._act_scale + self._act_shift).reshape(self._act_shape)
        scaled = scaled.astype(self._act_dtype, copy=False)
        reward, terminal, last = 0.0, False, False
        for _ in range(self.action_repeat):
            timestep = self._env.step(scaled)
            reward += float(timestep.reward or 0.0)
            if timestep.last():
                # dm_env: discount 0 at the last step = a true terminal state; a time-limit
                # end keeps discount 1 and must stay bootstrappable (SPEC defect 2).
                last, terminal = True, float(timestep.discount) == 0.0
                break
        self._steps += 1
        self._frames.append(self._frame(timestep))  # one render per agent step
        self._over = last or self._steps >= self.max_episode_steps
        return self._obs(), reward, self._over, terminal

    def sample_action(self) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, size=self.action_dim).astype(np.float32)

    def render(self, size: int = 256) -> np.ndarray:
        """(size, size, 3) uint8 from the same camera, for videos."""
        return self._env.physics.render(size, size, camera_id=self.camera_id)


def make_env(task: str, *, from_pixels: bool, image_size: int, action_repeat: int,
             frame_stack: int, seed: int) -> DMCEnv:
    """Build the env for an A2LS task name; see the module docstring for conventions.

    ``frame_stack`` applies to pixels only; state envs use 1 (as A2LS). ``seed`` seeds the task
    (``task_kwargs={"random": seed}``) and, separately, :meth:`DMCEnv.sample_action`.
    """
    domain, task_name = parse_task(task)
    return DMCEnv(domain, task_name, from_pixels=from_pixels, image_size=image_size,
                  action_repeat=action_repeat, frame_stack=frame_stack, seed=seed)
