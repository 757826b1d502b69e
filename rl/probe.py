"""How long ``rl.train.train(config)`` will take on this machine: a short timed probe.

The probe builds what a run builds (environments, agent, replay), fills the replay with a
few random steps, and times the three things a run repeats: an environment step (with its
render, for pixels), an action, and an update. :meth:`StepTimes.run_seconds` puts them
together in the order ``rl.train`` does them. Seconds, not a constant: the same config
takes ~2.5 minutes on states and days on pixels on a laptop CPU.
"""
from __future__ import annotations

import dataclasses
import time

from rl.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class StepTimes:
    setup_s: float        # imports, environments, agent, replay
    env_s: float          # one agent step of the environment (action repeat, render)
    act_s: float          # one action of the policy
    update_s: float       # one agent update (mean over actor and critic-only steps)
    episode_steps: int    # agent steps of an evaluation episode

    def run_seconds(self, config: TrainConfig) -> float:
        """Estimated wall time of ``train(config)``: random steps, then an update per
        step, and the evaluation episodes at every checkpoint (``config`` resolved)."""
        total = config.agent_steps
        warmup = min(config.init_steps, total)
        checkpoints = len(range(0, total, config.eval_every_agent_steps)) + 1
        evaluation = checkpoints * config.num_eval_episodes * self.episode_steps
        return (self.setup_s + warmup * self.env_s
                + (total - warmup) * (self.env_s + self.act_s + self.update_s)
                + evaluation * (self.env_s + self.act_s))

    def describe(self) -> str:
        return (f"update {self.update_s * 1e3:.1f} ms, env step {self.env_s * 1e3:.1f} ms, "
                f"act {self.act_s * 1e3:.1f} ms, setup {self.setup_s:.1f} s")


def _timed(fn, budget_s: float, at_most: int) -> float:
    """Mean seconds of ``fn()`` over as many calls as fit in ``budget_s`` (1..at_most)."""
    start, n = time.perf_counter(), 0
    while n < at_most and (n == 0 or time.perf_counter() - start < budget_s):
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def probe(config: TrainConfig, *, seconds: float = 3.0, threads: int | None = None,
          members: int = 1) -> StepTimes:
    """Time ``config`` (resolved or not) for about ``seconds`` after its setup. ``members``
    > 1: a cohort of that many seeds as ``rl.cohort.train_cohort`` trains it (one batched
    update and action for all, each member's env step), so the times are the cohort's."""
    t0 = time.perf_counter()
    import numpy as np
    import torch

    from rl.agent import make_agent
    from rl.envs import make_env
    from rl.population import make_population
    from rl.replay import ReplayBuffer
    from rl.train import prepare, resolve_device, seed_everything

    if members < 1:
        raise ValueError(f"--seeds: a probe needs at least one member, got {members}")
    config = prepare(config, seed=config.seed if config.seed >= 0 else 0)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(config.seed)
    stack = config.frame_stack if config.from_pixels else 1
    seeds = [config.seed + k for k in range(members)]
    envs = [make_env(config.task, from_pixels=config.from_pixels, image_size=config.render_size,
                     action_repeat=config.action_repeat, frame_stack=stack, seed=seed)
            for seed in seeds]
    env = envs[0]
    device = resolve_device(config.device)
    if members == 1:
        agent = make_agent(config, env.observation_shape, env.action_dim, device)
    else:
        agent = make_population(config, env.observation_shape, env.action_dim, device, seeds)
    replays = [ReplayBuffer(max(64, config.genome.horizon * 4 + 16), env.frame_shape,
                            env.frame_dtype, env.action_dim, frame_stack=stack, seed=seed)
               for seed in seeds]
    state = {"obs": [e.reset() for e in envs]}
    for replay, obs in zip(replays, state["obs"]):
        replay.start_episode(obs)

    def env_step() -> None:  # every member's
        for k, (e, replay) in enumerate(zip(envs, replays)):
            obs, reward, over, terminal = e.step(e.sample_action())
            replay.add(e.sample_action(), reward, obs, terminal)
            state["obs"][k] = obs
            if over:
                state["obs"][k] = e.reset()
                replay.start_episode(state["obs"][k])

    horizon = max(1, config.genome.horizon) if config.agent == "auxi_sac" else 1
    while not all(replay.can_sample(horizon) for replay in replays):
        env_step()
    for _ in range(2 * horizon + 8):
        env_step()
    setup_s = time.perf_counter() - t0
    share = seconds / 3
    env_s = _timed(env_step, share, 200)
    if members == 1:
        act = lambda: agent.act(state["obs"][0], sample=True)  # noqa: E731
    else:
        act = lambda: agent.act(np.stack(state["obs"]), sample=True)  # noqa: E731
    act_s = _timed(act, share / 2, 200)
    step = {"n": 0}

    def update() -> None:
        agent.update(replays[0] if members == 1 else replays, step["n"], diagnostics=False)
        step["n"] += 1

    update()  # the first update allocates; it is not what a run repeats
    update()
    update_s = _timed(update, share, 400)
    return StepTimes(setup_s=setup_s, env_s=env_s, act_s=act_s, update_s=update_s,
                     episode_steps=env.max_episode_steps)
