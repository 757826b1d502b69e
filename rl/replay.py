"""Replay memory that stores every frame once and samples multi-step windows inside episodes.

The released A2LS buffer stores ``obs`` and ``next_obs`` with all stacked frames (2 x 3 copies
of each frame, about 18 GB for 100k pixel transitions; SPEC defect 5) and walks multi-step
windows across episode ends, because DMC time limits are stored as not-done (SPEC defect 2).

Here a ring of ``capacity`` slots holds one frame each. The slot of frame ``s_{i+1}`` also holds
the transition that led to it (``a_i``, ``r_i``, whether ``s_{i+1}`` is terminal), and every slot
records its episode id and step in that episode. A window of horizon k starting at ``s_t`` uses
the frames of ``s_t .. s_{t+k}`` plus the ``frame_stack - 1`` frames before ``s_t`` that its
stacked observation needs, clamped to the episode's first frame (as the env's reset does).
A window is valid when all those slots hold one episode, contiguously: it is enough that the
first and last slot hold the same episode and their steps differ by their ring distance, since
an episode is written into consecutive slots and the write head overwrites in ring order.
That also rules out windows through the write head or through unwritten slots. Each slot's
(episode, step) is kept as one integer key, ``episode * 2**32 + step`` (unwritten: a large
negative number, whose step bits read 0), so the test is one subtraction: the keys of the
first and last slot differ by the ring distance exactly when both hold the same episode at
those steps.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from rl.run_dir import atomic_file

_EXACT_BELOW = 0.05  # acceptance rate under which sampling enumerates the valid starts instead
_EPISODE_KEY = 1 << 32  # key = episode * _EPISODE_KEY + step (steps stay far below 2**32)
_STEP_BITS = _EPISODE_KEY - 1  # key & _STEP_BITS = step
_UNWRITTEN = -(1 << 62)  # key of a never-written slot: differs hugely from every real key


@dataclasses.dataclass(frozen=True)
class Window:
    """B windows of horizon k, each inside one episode."""
    frames: np.ndarray    # (B, k + S, *frame_shape); frames[:, S-1+j] is the newest frame of s_{t+j}
    action: np.ndarray    # (B, k, action_dim) float32: a_t .. a_{t+k-1}
    reward: np.ndarray    # (B, k) float32: r_t .. r_{t+k-1}
    not_done: np.ndarray  # (B, k) float32: 0.0 where s_{t+j+1} is a true terminal state
    frame_stack: int

    def obs(self, j: int) -> np.ndarray:
        """Stacked observation s_{t+j} (oldest frame first, as the env returns it):
        (B, S*C, H, W) for pixels, (B, obs_dim) for states."""
        if not 0 <= j <= self.horizon:
            raise IndexError(f"obs({j}) outside 0..{self.horizon}")
        stack = self.frames[:, j:j + self.frame_stack]
        b, s, c = stack.shape[:3]
        return stack.reshape(b, s * c, *stack.shape[3:])

    @property
    def horizon(self) -> int:
        return self.action.shape[1]


class ReplayBuffer:
    """Ring of ``capacity`` frames; see the module docstring for the layout."""

    def __init__(self, capacity: int, frame_shape: tuple[int, ...], frame_dtype, action_dim: int,
                 frame_stack: int = 1, seed: int = 0):
        if capacity < 2 or frame_stack < 1 or action_dim < 1:
            raise ValueError(f"--replay_buffer_capacity: need capacity >= 2, frame_stack >= 1 and "
                             f"action_dim >= 1, got {capacity}, {frame_stack}, {action_dim}")
        self.capacity, self.frame_stack = int(capacity), int(frame_stack)
        self.frame_shape, self.frame_dtype = tuple(frame_shape), np.dtype(frame_dtype)
        self.action_dim = int(action_dim)
        # np.empty: pages are committed only when written, so an unfilled buffer costs nothing.
        self._frames = np.empty((capacity, *frame_shape), dtype=self.frame_dtype)
        self._action = np.empty((capacity, action_dim), dtype=np.float32)
        self._reward = np.empty(capacity, dtype=np.float32)
        self._not_done = np.empty(capacity, dtype=np.float32)  # 0.0: a true terminal state
        # (episode, step) of each slot, as one key (see the module docstring)
        self._key = np.full(capacity, _UNWRITTEN, dtype=np.int64)
        self._rng = np.random.default_rng(seed)
        self._head = 0           # next slot to write
        self._size = 0           # slots written so far (<= capacity)
        self._episode_id = -1    # current episode; -1 before the first start_episode
        self._episode_step = 0   # step of the last frame written in the current episode
        self._open = False       # an episode is in progress (add() is allowed)
        # Episodes present in the ring, oldest first: [id, first stored step, last stored step].
        # Only the oldest shrinks and only the newest grows, so counts stay O(#episodes).
        self._episodes: collections.deque[list[int]] = collections.deque()
        # horizon -> valid starts, kept up to date on every write (only the oldest and the
        # newest episode change), so sampling never walks all the episodes again.
        self._counts: dict[int, int] = {}

    def save(self, path) -> None:
        """Write the stored slots (oldest first) to ``path`` as .npz (``--save_buffer``)."""
        order = (np.arange(self._size) + (self._head if self._size == self.capacity else 0)) % self.capacity
        key = self._key[order]  # all written
        with atomic_file(path) as f:
            np.savez(f, frames=self._frames[order], action=self._action[order],
                     reward=self._reward[order], terminal=self._not_done[order] == 0.0,
                     episode=key // _EPISODE_KEY, step=key & _STEP_BITS,
                     frame_stack=self.frame_stack)

    # ------------------------------------------------------------------ writing
    def _newest_frame(self, obs: np.ndarray) -> np.ndarray:
        s, shape = self.frame_stack, self.frame_shape
        expected = (shape[0] * s, *shape[1:])
        obs = np.asarray(obs)
        if obs.shape != expected:
            raise ValueError(f"observation shape {obs.shape} != {expected} (frame_stack={s})")
        return obs.reshape(s, *shape)[-1]

    def _write(self, frame: np.ndarray) -> int:
        slot = self._head
        if self._key[slot] != _UNWRITTEN:
            # overwrite the oldest stored frame, which belongs to the oldest episode
            oldest = self._episodes[0]
            self._recount(oldest, -1)
            oldest[1] += 1
            if oldest[1] > oldest[2]:
                self._episodes.popleft()
            else:
                self._recount(oldest, +1)
        self._frames[slot] = frame
        self._key[slot] = self._episode_id * _EPISODE_KEY + self._episode_step
        if self._episode_step == 0:
            self._episodes.append([self._episode_id, 0, 0])
        else:
            self._recount(self._episodes[-1], -1)
            self._episodes[-1][2] = self._episode_step
        self._recount(self._episodes[-1], +1)
        self._head = (slot + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        return slot

    def start_episode(self, obs: np.ndarray) -> None:
        """Begin an episode with the env's reset observation (only its newest frame is kept)."""
        frame = self._newest_frame(obs)
        self._episode_id += 1
        self._episode_step = 0
        self._open = True
        self._write(frame)

    def add(self, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        """Store a transition of the current episode; ``terminal`` only for a true terminal state."""
        if not self._open:
            raise RuntimeError("ReplayBuffer.add before start_episode (or after a terminal state)")
        frame = self._newest_frame(next_obs)
        self._episode_step += 1
        slot = self._write(frame)
        self._action[slot] = np.asarray(action, dtype=np.float32).reshape(self.action_dim)
        self._reward[slot] = reward
        self._not_done[slot] = 0.0 if terminal else 1.0
        if terminal:
            self._open = False

    # ------------------------------------------------------------------ counting
    def _starts_in(self, episode: list[int], horizon: int) -> int:
        """Valid window starts of horizon ``horizon`` in one stored episode."""
        _, first, last = episode
        # An episode that lost its first frames needs S-1 stored frames before a start.
        lowest = first if first == 0 else first + self.frame_stack - 1
        return max(0, last - horizon - lowest + 1)

    def _recount(self, episode: list[int], sign: int) -> None:
        for horizon in self._counts:
            self._counts[horizon] += sign * self._starts_in(episode, horizon)

    def _count(self, horizon: int) -> int:
        """Number of valid window starts (see the module docstring); counted once per
        horizon, then kept up to date by every write."""
        if horizon not in self._counts:
            self._counts[horizon] = sum(self._starts_in(e, horizon) for e in self._episodes)
        return self._counts[horizon]

    def __len__(self) -> int:
        return self._count(1)

    def can_sample(self, horizon: int) -> bool:
        return horizon + self.frame_stack <= self.capacity and self._count(horizon) > 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._frames, self._action, self._reward, self._not_done,
                                      self._key))

    # ------------------------------------------------------------------ sampling
    def _valid(self, start: np.ndarray, horizon: int) -> np.ndarray:
        """Whether each start slot begins a valid window (vectorised)."""
        cap, key = self.capacity, self._key
        last = key[(start + horizon) % cap]
        if self.frame_stack == 1:
            return last - key[start] == horizon
        context = np.minimum(self._key[start] & _STEP_BITS, self.frame_stack - 1)
        return last - key[(start - context) % cap] == horizon + context

    def _starts(self, batch_size: int, horizon: int) -> np.ndarray:
        count = self._count(horizon)
        if horizon + self.frame_stack > self.capacity or count == 0:
            raise ValueError(f"cannot sample windows of horizon {horizon}: no episode in the "
                             f"buffer is long enough ({len(self)} transitions stored)")
        rate = count / self._size
        if rate < _EXACT_BELOW:  # rare: enumerate every written slot once
            valid = np.flatnonzero(self._valid(np.arange(self._size), horizon))
            return valid[self._rng.integers(len(valid), size=batch_size)]
        # Rejection sampling in bulk: uniform candidates over written slots, keep the valid
        # ones; the accepted starts are uniform over valid starts.
        chosen: list[np.ndarray] = []
        needed = batch_size
        while needed > 0:
            draw = int(needed / rate * 1.25) + 16
            candidates = self._rng.integers(self._size, size=draw)
            accepted = candidates[self._valid(candidates, horizon)][:needed]
            chosen.append(accepted)
            needed -= len(accepted)
        return chosen[0] if len(chosen) == 1 else np.concatenate(chosen)

    def sample(self, batch_size: int, horizon: int) -> Window:
        """``batch_size`` windows of ``horizon`` transitions, uniform over valid starts."""
        if horizon < 1 or batch_size < 1:
            raise ValueError(f"sample: need horizon >= 1 and batch_size >= 1, got {horizon}, {batch_size}")
        start = self._starts(batch_size, horizon)[:, None]
        cap, s = self.capacity, self.frame_stack
        # Frame positions relative to s_t: -(S-1) .. k, the negative ones clamped to the
        # episode's first frame. s_{t+1} .. s_{t+k} (never clamped) hold the transitions.
        offsets = np.arange(-(s - 1), horizon + 1)
        if s > 1:
            offsets = np.maximum(offsets, -(self._key[start] & _STEP_BITS))
        frame_slots = (start + offsets) % cap
        next_slots = frame_slots[:, s:]
        return Window(
            frames=self._frames[frame_slots],
            action=self._action[next_slots],
            reward=self._reward[next_slots],
            not_done=self._not_done[next_slots],
            frame_stack=s,
        )
