"""Train K seeds of one config as one batched model: the K-member counterpart of ``rl.train``.

``train_cohort(config, seeds)`` runs ``rl.train.train``'s loop for every seed at once: one
:class:`rl.population.Population` (the K agents as one batched model), K train and K
evaluation envs, K replay buffers, all seeded per member exactly as a lone run of that seed
seeds them (member k draws the random numbers the lone run draws; the two differ by float
rounding only, which training then amplifies). Each agent step: one batched ``act`` for
all members, one batched update, then each member's env step. Evaluations run the K
evaluation envs in lockstep with batched mean actions.

A member whose update returns a non-finite metric ends as a lone run ends (``failed`` set,
no further checkpoint); it is dropped from the population and the others go on unchanged.
Results come back as K :class:`rl.train.TrainResult`, in the order of ``seeds``; each run
directory (optional) gets what a lone run's gets. ``wall_s`` / ``train_s`` are the
cohort's (the members share them).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from rl import allocator
from rl.config import TrainConfig
from rl.envs import make_env
from rl.logger import Logger
from rl.population import Population, make_population
from rl.replay import ReplayBuffer
from rl.run_dir import describe
from rl.train import (TrainResult, divergence, episode_row, finish, prepare, resolve_device,
                      save_checkpoint_files)

OnCheckpoint = Callable[[int, tuple[tuple[int, float], ...]], None]


def evaluate_cohort(envs: Sequence, population: Population, episodes: int,
                    videos: list[list[np.ndarray]] | None = None) -> list[list[float]]:
    """Mean-action returns of ``episodes`` episodes of each member (``envs[k]`` is member k's,
    in the population's order), the envs stepped in lockstep; a member whose episode ended
    waits for the others. ``videos[k]`` gets member k's first episode, if asked."""
    returns: list[list[float]] = [[] for _ in envs]
    population.train(False)
    for episode in range(episodes):
        obs = [env.reset() for env in envs]
        running, totals = [True] * len(envs), [0.0] * len(envs)
        record = videos is not None and episode == 0
        if record:
            for env, video in zip(envs, videos):
                video.append(env.render())
        while any(running):
            actions = population.act(np.stack(obs), sample=False)
            for k, env in enumerate(envs):
                if running[k]:
                    obs[k], reward, over, _ = env.step(actions[k])
                    totals[k] += reward
                    running[k] = not over
                    if record:
                        videos[k].append(env.render())
        for k, total in enumerate(totals):
            returns[k].append(total)
    population.train(True)
    return returns


class _Member:
    """One member's envs, replay, log and running episode (what a lone run keeps in locals)."""

    def __init__(self, config: TrainConfig, index: int):
        stack = config.frame_stack if config.from_pixels else 1
        kwargs = dict(from_pixels=config.from_pixels, image_size=config.render_size,
                      action_repeat=config.action_repeat, frame_stack=stack)
        self.config, self.index, self.run_dir, self.logger = config, index, None, Logger(None)
        self.env = make_env(config.task, seed=config.seed, **kwargs)
        self.eval_env = make_env(config.task, seed=config.seed + 12345, **kwargs)
        self.replay = ReplayBuffer(config.replay_buffer_capacity, self.env.frame_shape,
                                   self.env.frame_dtype, self.env.action_dim, frame_stack=stack,
                                   seed=config.seed)
        self.curve: list[tuple[int, float]] = []
        self.failed: str | None = None
        self.failed_at = 0               # env step of the update that diverged
        self.obs, self.over, self.episode = None, True, 0
        self.episode_return, self.episode_start, self.sums, self.counts = 0.0, 0.0, {}, {}

    def open_run_dir(self, run_dir: Path, device: torch.device, seeds: Sequence[int]) -> None:
        self.run_dir = run_dir
        describe(run_dir, self.config.to_dict(), {"device": str(device),
                                                  "cohort": {"seeds": list(seeds), "member": self.index}})
        self.logger = Logger(run_dir, save_tb=self.config.save_tb)

    def start_episode(self, step: int) -> None:
        if step > 0:
            self.logger.train(episode_row(step, self.config.action_repeat, self.episode,
                                          self.episode_return, time.time() - self.episode_start,
                                          self.env.max_episode_steps, self.sums, self.counts))
        self.obs = self.env.reset()
        self.replay.start_episode(self.obs)
        self.over, self.episode_return, self.episode_start = False, 0.0, time.time()
        self.sums, self.counts = {}, {}
        self.episode += 1

    def record(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def step(self, action: np.ndarray) -> None:
        self.obs, reward, self.over, terminal = self.env.step(action)
        self.replay.add(action, reward, self.obs, terminal)
        self.episode_return += reward


def train_cohort(config: TrainConfig, seeds: Sequence[int],
                 run_dirs: Sequence[str | os.PathLike] | None = None, *,
                 threads: int | None = None,
                 on_checkpoint: OnCheckpoint | None = None) -> list[TrainResult]:
    """Train ``config`` once per seed, all seeds as one batched model; see the module docstring.

    ``on_checkpoint(member_index, curve)`` is called after each evaluation of a member with
    its curve so far (``member_index`` indexes ``seeds``). Raises ValueError (one line naming
    the flag) for a bad config or seeds, before writing anything.
    """
    wall_start = time.time()
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds: a cohort needs distinct seeds >= 0, got {seeds}")
    if run_dirs is not None and len(run_dirs) != len(seeds):
        raise ValueError(f"--run: {len(run_dirs)} run directories for {len(seeds)} seeds")
    configs = [prepare(config, seed) for seed in seeds]
    c = configs[0]
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(c.device)
    if allocator.wanted(device.type, c.from_pixels):
        allocator.keep_freed_memory()
    members = [_Member(cfg, k) for k, cfg in enumerate(configs)]
    env = members[0].env
    population = make_population(c, env.observation_shape, env.action_dim, device, seeds)
    if run_dirs is not None:  # only once nothing can fail on the config any more
        for member, run_dir in zip(members, run_dirs):
            member.open_run_dir(Path(run_dir), device, seeds)
    alive = list(members)  # in the population's order
    repeat, total, every = c.action_repeat, c.agent_steps, c.eval_every_agent_steps
    train_start = time.time()

    def checkpoint(step: int) -> None:
        t0 = time.time()
        videos = [[] for _ in alive] if c.save_video and run_dirs is not None else None
        returns = evaluate_cohort([m.eval_env for m in alive], population, c.num_eval_episodes,
                                  videos)
        seconds = time.time() - t0
        for k, member in enumerate(alive):
            env_step = step * repeat
            member.curve.append((env_step, float(np.mean(returns[k]))))
            member.logger.eval(env_step, returns[k], seconds)
            if member.run_dir is not None:
                save_checkpoint_files(member.run_dir, c, env_step, videos[k] if videos else None,
                                      lambda: population.member_state_dict(k), member.replay)
            if on_checkpoint is not None:
                on_checkpoint(member.index, tuple(member.curve))

    for step in range(total):
        if step % every == 0:
            checkpoint(step)
        for member in alive:
            if member.over:
                member.start_episode(step)
        if step < c.init_steps:
            actions = [member.env.sample_action() for member in alive]
        else:
            actions = population.act(np.stack([member.obs for member in alive]), sample=True)
            metrics = population.update([member.replay for member in alive], step,
                                        diagnostics=step % c.log_interval == 0)
            for member, values in zip(alive, metrics):
                member.failed = divergence(values, step * repeat)
                member.failed_at = step * repeat
                if member.failed is None:
                    member.record(values)
            keep = [k for k, member in enumerate(alive) if member.failed is None]
            if len(keep) < len(alive):
                alive = [alive[k] for k in keep]
                if not alive:
                    break
                population.keep(keep)
                actions = actions[keep]
        for member, action in zip(alive, actions):
            member.step(action)
    else:
        checkpoint(total)

    results = []
    for member in members:
        member.logger.close()
        trained = member.failed_at if member.failed else total * repeat
        results.append(finish(member.curve, member.failed, wall_start, train_start,
                              member.run_dir, member.config.seed, env_steps=trained))
    return results
