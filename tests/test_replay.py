"""ReplayBuffer: windows stay inside one episode (SPEC defect 2), frames stored once (defect 5)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from rl.replay import ReplayBuffer, Window

STACK = 3


class Stacker:
    """Synthetic env: frame = (episode, step) written into every element; stacks like DMCEnv."""

    def __init__(self, frame_shape: tuple[int, ...], dtype, stack: int):
        self.frame_shape, self.dtype, self.stack = frame_shape, np.dtype(dtype), stack
        self.frames: collections.deque = collections.deque(maxlen=stack)

    def frame(self, episode: int, step: int) -> np.ndarray:
        frame = np.empty(self.frame_shape, self.dtype)
        # First half of the first axis holds the episode id, the rest the step.
        half = max(1, self.frame_shape[0] // 2)
        frame[:half], frame[half:] = episode % 250, step
        return frame

    def reset(self, episode: int) -> np.ndarray:
        for _ in range(self.stack):
            self.frames.append(self.frame(episode, 0))
        return np.concatenate(self.frames)

    def step(self, episode: int, step: int) -> np.ndarray:
        self.frames.append(self.frame(episode, step))
        return np.concatenate(self.frames)


def fill(buffer: ReplayBuffer, stacker: Stacker, lengths, terminal_every: int = 3,
         action_dim: int = 2):
    """Write episodes of the given lengths; returns {(episode, step): (obs, action, reward, terminal)}
    and the (episode, step) of every frame written, in order."""
    log, order = {}, []
    for episode, length in enumerate(lengths):
        obs = stacker.reset(episode)
        buffer.start_episode(obs)
        log[episode, 0] = (obs, None, None, False)
        order.append((episode, 0))
        for step in range(1, length + 1):
            obs = stacker.step(episode, step)
            action = np.array([episode, step] + [0.5] * (action_dim - 2), dtype=np.float32)
            terminal = step == length and episode % terminal_every == 0
            buffer.add(action, float(1000 * episode + step), obs, terminal)
            log[episode, step] = (obs, action, float(1000 * episode + step), terminal)
            order.append((episode, step))
    return log, order


def identify(window: Window, b: int, j: int) -> tuple[int, int]:
    """(episode % 250, step) of the newest frame of s_{t+j} in window b."""
    frame = window.frames[b, window.frame_stack - 1 + j]
    half = max(1, frame.shape[0] // 2)
    return int(frame[:half].flat[0]), int(frame[half:].flat[0])


def brute_force_starts(order, capacity: int, horizon: int, stack: int) -> set[tuple[int, int]]:
    """Valid window starts by definition: every needed (episode, step) is still stored."""
    stored = set(order[-capacity:])
    starts = set()
    for episode, step in stored:
        needed = [(episode, s) for s in range(max(0, step - stack + 1), step + horizon + 1)]
        if all(n in stored for n in needed):
            starts.add((episode, step))
    return starts


def check_windows(window: Window, log, stored: set, horizon: int, lengths) -> set:
    """Every window: one episode, contiguous, equal to what the stacker produced; returns starts."""
    starts = set()
    assert window.horizon == horizon
    for b in range(window.frames.shape[0]):
        episode, step = identify(window, b, 0)
        episode = next(e for e in range(len(lengths)) if e % 250 == episode and (e, step) in stored)
        starts.add((episode, step))
        for j in range(horizon + 1):
            assert identify(window, b, j) == (episode % 250, step + j)  # same episode, no gap
            assert (episode, step + j) in stored  # nothing from across the write head
            assert np.array_equal(window.obs(j)[b], log[episode, step + j][0])
        for j in range(horizon):
            _, action, reward, terminal = log[episode, step + j + 1]
            assert np.array_equal(window.action[b, j], action)
            assert window.reward[b, j] == reward
            assert window.not_done[b, j] == (0.0 if terminal else 1.0)
    return starts


@pytest.mark.parametrize("frame_shape,dtype", [((2,), np.float32), ((3, 4, 4), np.uint8)])
def test_windows_stay_in_one_episode_and_rebuild_stacks(frame_shape, dtype):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, size=40).tolist()  # short episodes: boundaries everywhere
    capacity = 10_000  # no wrap here
    buffer = ReplayBuffer(capacity, frame_shape, dtype, action_dim=2, frame_stack=STACK, seed=1)
    stacker = Stacker(frame_shape, dtype, STACK)
    log, order = fill(buffer, stacker, lengths)
    stored = set(order)
    assert len(buffer) == sum(lengths)  # every transition is sampleable at horizon 1
    for horizon in range(1, 11):
        expected = brute_force_starts(order, capacity, horizon, STACK)
        assert buffer.can_sample(horizon) == bool(expected)
        if not expected:
            continue
        window = buffer.sample(96, horizon)
        assert window.frames.shape == (96, horizon + STACK, *frame_shape)
        assert window.obs(0).shape == (96, STACK * frame_shape[0], *frame_shape[1:])
        starts = check_windows(window, log, stored, horizon, lengths)
        assert starts <= expected
    # Starts at the first steps of an episode rebuild the reset stack (copies of frame 0).
    window = buffer.sample(512, 1)
    firsts = [b for b in range(512) if identify(window, b, 0)[1] == 0]
    assert firsts, "no window started at an episode's first frame"
    for b in firsts:
        assert np.all(window.frames[b, :STACK] == window.frames[b, STACK - 1])


@pytest.mark.parametrize("stack", [1, STACK])  # state vectors are not stacked
def test_ring_wraparound_never_spans_write_head(stack):
    lengths = [5] * 60 + [3, 7, 2, 9, 4, 5, 6]  # about 370 frames through a ring of 50
    capacity = 50
    buffer = ReplayBuffer(capacity, (2,), np.float32, action_dim=2, frame_stack=stack, seed=2)
    log, order = fill(buffer, Stacker((2,), np.float32, stack), lengths)
    stored = set(order[-capacity:])
    for horizon in range(1, 11):
        expected = brute_force_starts(order, capacity, horizon, stack)
        assert buffer._count(horizon) == len(expected)
        if horizon == 1:
            assert len(buffer) == len(expected)
        if not expected:
            assert not buffer.can_sample(horizon)
            with pytest.raises(ValueError, match="horizon"):
                buffer.sample(8, horizon)
            continue
        starts = check_windows(buffer.sample(200, horizon), log, stored, horizon, lengths)
        assert starts <= expected
        if horizon <= 3:  # uniform sampling reaches every valid start
            many = buffer.sample(2000, horizon)
            frames = many.frames[:, stack - 1, :]  # newest frame of s_t: (episode % 250, step)
            assert {(int(e), int(s)) for e, s in frames} == expected  # fewer than 250 episodes


def test_counts_stay_exact_while_writing_through_the_ring():
    """Counts are kept up to date on each write (not recounted): after every write, through
    wrap-around, one episode longer than the ring and one-frame episodes, they equal the
    brute-force count for every horizon asked for so far."""
    capacity, horizons = 23, range(1, 9)
    buffer = ReplayBuffer(capacity, (2,), np.float32, action_dim=2, frame_stack=STACK, seed=4)
    stacker, order = Stacker((2,), np.float32, STACK), []
    for episode, length in enumerate([4, 0, 30, 1, 6, 0, 12, 3, 25, 2, 9]):
        buffer.start_episode(stacker.reset(episode))
        order.append((episode, 0))
        for step in range(length + 1):
            if step:
                buffer.add(np.zeros(2), 0.0, stacker.step(episode, step), False)
                order.append((episode, step))
            for horizon in horizons:
                assert buffer._count(horizon) == len(
                    brute_force_starts(order, capacity, horizon, STACK)), (episode, step, horizon)


def test_episode_in_progress_and_longer_than_ring():
    # One episode longer than the ring: the oldest frames are gone, stacks must not use them.
    capacity = 20
    buffer = ReplayBuffer(capacity, (2,), np.float32, action_dim=2, frame_stack=STACK, seed=3)
    stacker = Stacker((2,), np.float32, STACK)
    obs = stacker.reset(0)
    buffer.start_episode(obs)
    order, log = [(0, 0)], {(0, 0): (obs, None, None, False)}
    for step in range(1, 45):
        obs = stacker.step(0, step)
        action = np.array([0, step], np.float32)
        buffer.add(action, float(step), obs, False)
        log[0, step] = (obs, action, float(step), False)
        order.append((0, step))
    for horizon in (1, 5, 17):
        expected = brute_force_starts(order, capacity, horizon, STACK)
        assert buffer._count(horizon) == len(expected) > 0
        starts = check_windows(buffer.sample(200, horizon), log, set(order[-capacity:]), horizon, [1])
        assert starts <= expected
    assert not buffer.can_sample(18)  # needs 18 + 3 frames > 20


def test_rare_valid_starts_use_exact_enumeration():
    lengths = [1] * 100 + [12]  # only the long episode holds horizon-10 windows: 3 of 213 slots
    buffer = ReplayBuffer(1000, (2,), np.float32, action_dim=2, frame_stack=1, seed=4)
    log, order = fill(buffer, Stacker((2,), np.float32, 1), lengths)
    window = buffer.sample(300, 10)
    starts = check_windows(window, log, set(order), 10, lengths)
    assert starts == {(100, 0), (100, 1), (100, 2)}


def test_seeded_sampling_is_deterministic():
    def windows(seed: int):
        buffer = ReplayBuffer(64, (3, 4, 4), np.uint8, action_dim=2, frame_stack=STACK, seed=seed)
        fill(buffer, Stacker((3, 4, 4), np.uint8, STACK), [5] * 30)
        return [buffer.sample(32, h) for h in (1, 4, 1)]

    first, again, other = windows(7), windows(7), windows(8)
    for a, b in zip(first, again):
        for name in ("frames", "action", "reward", "not_done"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert any(not np.array_equal(a.frames, c.frames) for a, c in zip(first, other))


def test_memory_of_a_full_size_pixel_buffer():
    # Allocated with np.empty: nothing is committed until written, so this costs no RAM here.
    buffer = ReplayBuffer(100_000, (3, 100, 100), np.uint8, action_dim=6, frame_stack=3)
    assert 3.0e9 <= buffer.nbytes <= 3.5e9
    assert len(buffer) == 0 and not buffer.can_sample(1)


def test_misuse_is_reported():
    buffer = ReplayBuffer(10, (2,), np.float32, action_dim=2, frame_stack=STACK)
    with pytest.raises(RuntimeError, match="start_episode"):
        buffer.add(np.zeros(2), 0.0, np.zeros(6, np.float32), False)
    with pytest.raises(ValueError, match="shape"):
        buffer.start_episode(np.zeros(2, np.float32))  # not stacked
    buffer.start_episode(np.zeros(6, np.float32))
    buffer.add(np.zeros(2), 0.0, np.zeros(6, np.float32), True)
    with pytest.raises(RuntimeError):  # a terminal state ends the episode
        buffer.add(np.zeros(2), 0.0, np.zeros(6, np.float32), False)
