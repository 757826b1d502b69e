"""rl.envs: A2LS task names, action repeat, time limits vs terminals, seeding, pixel stacks."""
from __future__ import annotations

import rl.envs  # noqa: F401  first: it sets MUJOCO_GL before dm_control is imported
import dm_env
import numpy as np
import pytest
from dm_control import suite

from rl.envs import TASK_NAMES, make_env, parse_task
from rl.replay import ReplayBuffer


@pytest.mark.parametrize("name,expected", [
    ("cheetah_run", ("cheetah", "run")),
    ("ball_in_cup_catch", ("ball_in_cup", "catch")),
    ("point_mass_easy", ("point_mass", "easy")),
    ("cartpole_swingup_sparse", ("cartpole", "swingup_sparse")),
    ("humanoid_CMU_run", ("humanoid_CMU", "run")),
    ("humanoid_run_pure_state", ("humanoid", "run_pure_state")),
    ("lqr_lqr_2_1", ("lqr", "lqr_2_1")),
])
def test_parse_task(name, expected):
    assert parse_task(name) == expected


def test_parse_task_covers_every_suite_task():
    assert len(TASK_NAMES) == len(suite.ALL_TASKS)
    assert [parse_task(name) for name in TASK_NAMES] == list(suite.ALL_TASKS)


@pytest.mark.parametrize("name", ["cheetah_walk", "foo_bar", "cheetah", "ballincup_catch", ""])
def test_unknown_task_is_one_line_naming_the_flag(name):
    with pytest.raises(ValueError) as info:
        parse_task(name)
    message = str(info.value)
    assert message.startswith("--domain_name: unknown task") and "\n" not in message
    assert message.count(",") < 10  # a few suggestions, not all 51 tasks
    if name == "ballincup_catch":
        assert "ball_in_cup_catch" in message


def _run_episode(env, seed: int):
    rng = np.random.default_rng(seed)
    observations, results = [env.reset()], []
    while True:
        obs, reward, over, terminal = env.step(rng.uniform(-1, 1, env.action_dim))
        observations.append(obs)
        results.append((reward, over, terminal))
        if over:
            return observations, results


def test_state_episode_ends_at_time_limit_without_terminal():
    env = make_env("cartpole_swingup", from_pixels=False, image_size=84, action_repeat=8,
                   frame_stack=3, seed=0)
    assert env.max_episode_steps == 125 and env.action_dim == 1
    assert env.observation_shape == env.frame_shape == (5,) and env.frame_dtype == np.float32
    observations, results = _run_episode(env, 0)
    assert len(results) == env.max_episode_steps
    assert [over for _, over, _ in results] == [False] * 124 + [True]
    assert not any(terminal for _, _, terminal in results)  # a time limit is not a terminal state
    assert all(o.shape == (5,) and o.dtype == np.float32 for o in observations)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1))


def test_reward_is_summed_over_repeats_and_actions_rescaled():
    env = make_env("quadruped_walk", from_pixels=False, image_size=84, action_repeat=3,
                   frame_stack=1, seed=5)
    raw = suite.load("quadruped", "walk", task_kwargs={"random": 5})
    env.reset()
    raw.reset()
    spec = raw.action_spec()  # bounds [-1, 1.1]: not symmetric
    for _ in range(4):
        action = env.sample_action()
        scaled = spec.minimum + (action.astype(np.float64) + 1) / 2 * (spec.maximum - spec.minimum)
        expected = sum(raw.step(scaled).reward for _ in range(3))
        obs, reward, _, _ = env.step(action)
        assert reward == pytest.approx(expected, rel=1e-6, abs=1e-9)
    flat = np.concatenate([np.ravel(v) for v in raw.task.get_observation(raw.physics).values()])
    np.testing.assert_allclose(obs, flat.astype(np.float32), rtol=1e-6)


def test_true_terminal_stops_the_repeat(monkeypatch):
    env = make_env("cartpole_swingup", from_pixels=False, image_size=84, action_repeat=8,
                   frame_stack=1, seed=0)
    env.reset()
    calls = []
    real_step = env._env.step

    def step(action):  # a fake terminal state (discount 0) at the third physics step
        timestep = real_step(action)
        calls.append(timestep.reward)
        if len(calls) == 3:
            return dm_env.termination(reward=timestep.reward, observation=timestep.observation)
        return timestep

    monkeypatch.setattr(env._env, "step", step)
    _, reward, over, terminal = env.step(np.zeros(1))
    assert len(calls) == 3 and over and terminal
    assert reward == pytest.approx(sum(calls))


def test_same_seed_same_observations():
    def trace(seed: int):
        env = make_env("cheetah_run", from_pixels=False, image_size=84, action_repeat=4,
                       frame_stack=1, seed=seed)
        out = [env.reset()]
        for _ in range(10):
            out.append(env.step(env.sample_action())[0])
        out.append(env.reset())  # the second episode's start is seeded too
        return np.stack(out)

    first, again, other = trace(3), trace(3), trace(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_pixel_env_stacks_frames_and_matches_replay_windows():
    # action_repeat 200 makes 5-step episodes: few renders, and episode boundaries.
    env = make_env("cartpole_swingup", from_pixels=True, image_size=32, action_repeat=200,
                   frame_stack=3, seed=1)
    assert env.observation_shape == (9, 32, 32) and env.frame_shape == (3, 32, 32)
    assert env.max_episode_steps == 5
    buffer = ReplayBuffer(8, env.frame_shape, env.frame_dtype, env.action_dim, frame_stack=3,
                          seed=0)
    episodes = []
    for _ in range(2):
        obs = env.reset()
        assert obs.shape == (9, 32, 32) and obs.dtype == np.uint8
        assert np.array_equal(obs[0:3], obs[3:6]) and np.array_equal(obs[3:6], obs[6:9])
        buffer.start_episode(obs)
        episode = [obs]
        over = False
        while not over:
            nxt, reward, over, terminal = env.step(env.sample_action())
            assert np.array_equal(nxt[:6], episode[-1][3:])  # the stack shifts by one frame
            buffer.add(env.sample_action(), reward, nxt, terminal)
            episode.append(nxt)
        episodes.append(episode)
    assert env.render(48).shape == (48, 48, 3)
    # The ring holds the last 8 frames: the end of episode 0 (too short for a window with
    # its stack context) and all of episode 1.
    stored = [(e, s) for e in range(2) for s in range(6)][-8:]
    window = buffer.sample(20, 2)
    assert {(e, s) for e, s in stored if any(
        np.array_equal(episodes[e][s], window.obs(0)[b]) for b in range(20))} == {
        (1, 0), (1, 1), (1, 2), (1, 3)}
    for b in range(20):
        matches = [(e, s) for e, s in stored if np.array_equal(episodes[e][s], window.obs(0)[b])]
        assert len(matches) == 1
        e, s = matches[0]
        for j in range(3):
            assert (e, s + j) in stored
            np.testing.assert_array_equal(window.obs(j)[b], episodes[e][s + j])
