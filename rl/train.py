"""Train one agent on one DMC task: the function the search and evaluate.py call.

``train(config, run_dir)`` runs the released code's loop (evaluate every ``eval_freq``
environment steps, random actions for ``init_steps`` agent steps, one update per agent
step after that) and returns the learning curve and its approximate AULC (SPEC section 4:
the mean evaluation return over the checkpoints). A diverging run (a non-finite loss) ends
with ``failed`` set, not an exception.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rl.agent import make_agent
from rl import allocator
from rl.config import TrainConfig, resolve
from rl.envs import make_env, parse_task
from rl.logger import Logger
from rl.replay import ReplayBuffer
from rl.run_dir import atomic_write_json, describe


@dataclasses.dataclass(frozen=True)
class TrainResult:
    curve: tuple[tuple[int, float], ...]  # (env step, mean evaluation return)
    approx_aulc: float
    final_return: float
    wall_s: float
    train_s: float
    failed: str | None = None
    run_dir: str | None = None
    seed: int | None = None
    env_steps: int = 0                    # environment steps trained (fewer if it diverged)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(config: TrainConfig, seed: int | None = None) -> TrainConfig:
    """Resolve defaults, validate the task and draw a seed if asked (``--seed -1``)."""
    config = resolve(config)
    parse_task(config.task)
    if seed is not None:
        config = config.replace(seed=seed)
    if config.seed < 0:
        config = config.replace(seed=int(np.random.default_rng().integers(1, 1_000_000)))
    return config


def evaluate(env, agent, episodes: int, video=None) -> list[float]:
    """Mean-action returns of ``episodes`` full episodes (the first one recorded if asked)."""
    returns = []
    agent.train(False)
    for i in range(episodes):
        obs, over, total = env.reset(), False, 0.0
        if video is not None and i == 0:
            video.append(env.render())
        while not over:
            obs, reward, over, _ = env.step(agent.act(obs, sample=False))
            total += reward
            if video is not None and i == 0:
                video.append(env.render())
        returns.append(total)
    agent.train(True)
    return returns


def _save_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    import imageio.v2 as imageio
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=fps, macro_block_size=1)


# Pieces of the loop that rl.cohort (K members at once) shares.
def divergence(metrics: dict[str, float], env_step: int) -> str | None:
    """Why a run stops after an update with these metrics (a non-finite one), or None."""
    bad = next((k for k, v in metrics.items() if not math.isfinite(v)), None)
    return f"diverged: non-finite {bad} at env step {env_step}" if bad else None


def episode_row(step: int, repeat: int, episode: int, episode_return: float, duration: float,
                max_episode_steps: int, sums: dict, counts: dict) -> dict:
    """The train.csv row of an episode that ended before agent step ``step``."""
    row = {"env_step": step * repeat, "episode": episode, "episode_return": episode_return,
           "duration_s": round(duration, 3),
           "steps_per_s": round(max_episode_steps * repeat / max(duration, 1e-9), 1)}
    row.update({k: sums[k] / counts[k] for k in sums})
    return row


def save_checkpoint_files(run_dir: Path, config: TrainConfig, env_step: int,
                          frames: list[np.ndarray] | None, state_dict, replay) -> None:
    """What a checkpoint writes besides eval.csv, each if its flag asks: the first evaluation
    episode's video, the agent's state (``state_dict()``), the replay."""
    if frames:
        _save_video(run_dir / "video" / f"{env_step}.mp4", frames)
    if config.save_model:
        (run_dir / "model").mkdir(exist_ok=True)
        torch.save(state_dict(), run_dir / "model" / f"agent_{env_step}.pt")
    if config.save_buffer:
        (run_dir / "buffer").mkdir(exist_ok=True)
        replay.save(run_dir / "buffer" / "replay.npz")


def finish(curve: list[tuple[int, float]], failed: str | None, wall_start: float,
           train_start: float, run_dir, seed: int, env_steps: int = 0) -> TrainResult:
    """The run's result (also written to ``result.json`` in its run directory);
    ``env_steps``: the environment steps trained."""
    train_s = time.time() - train_start
    returns = [r for _, r in curve]
    result = TrainResult(
        curve=tuple(curve),
        approx_aulc=float(np.mean(returns)) if returns else float("nan"),
        final_return=returns[-1] if returns else float("nan"),
        wall_s=time.time() - wall_start, train_s=train_s, failed=failed,
        run_dir=str(run_dir) if run_dir else None, seed=seed, env_steps=env_steps)
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "result.json", result.to_dict())
    return result


class _Progress:
    """One status line: steps, speed and the last evaluation return."""

    def __init__(self, enabled: bool, total_env_steps: int, label: str):
        self.enabled, self.total, self.label = enabled, total_env_steps, label
        self.tty = sys.stderr.isatty()
        self.start = self.last_print = time.time()
        self.last_eval = "-"

    def eval(self, env_step: int, mean: float) -> None:
        self.last_eval = f"{mean:.1f} @ {env_step}"
        self.show(env_step, force=True)

    def show(self, env_step: int, force: bool = False) -> None:
        now = time.time()
        if not self.enabled or (not force and now - self.last_print < (1.0 if self.tty else 30.0)):
            return
        self.last_print = now
        elapsed = now - self.start
        speed = env_step / elapsed if elapsed > 0 else 0.0
        eta = (self.total - env_step) / speed if speed > 0 else float("nan")
        line = (f"[{self.label}] {env_step}/{self.total} env steps | {speed:.0f} steps/s | "
                f"last eval {self.last_eval} | {elapsed:.0f}s elapsed, ~{eta:.0f}s left")
        print(("\r" + line.ljust(110)) if self.tty else line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


Curve = tuple[tuple[int, float], ...]


def train(config: TrainConfig, run_dir: str | os.PathLike | None = None, *, progress: bool = False,
          threads: int | None = None, seed: int | None = None,
          on_checkpoint: Callable[[Curve], None] | None = None) -> TrainResult:
    """Train ``config.agent`` on ``config.task``; see :class:`TrainResult`.

    ``on_checkpoint(curve)`` is called after every evaluation with the curve so far (a Ray
    trial reports it there, so that a scheduler can stop the run early).

    Raises ValueError (one line naming the flag) for a bad config, before writing anything.
    """
    wall_start = time.time()
    config = prepare(config, seed)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if allocator.wanted(device.type, config.from_pixels):
        allocator.keep_freed_memory()  # no page faults for the pixel update's big temporaries

    stack = config.frame_stack if config.from_pixels else 1
    env_kwargs = dict(from_pixels=config.from_pixels, image_size=config.render_size,
                      action_repeat=config.action_repeat, frame_stack=stack)
    env = make_env(config.task, seed=config.seed, **env_kwargs)
    eval_env = make_env(config.task, seed=config.seed + 12345, **env_kwargs)
    agent = make_agent(config, env.observation_shape, env.action_dim, device)
    replay = ReplayBuffer(config.replay_buffer_capacity, env.frame_shape, env.frame_dtype,
                          env.action_dim, frame_stack=stack, seed=config.seed)

    if run_dir is not None:
        run_dir = Path(run_dir)
        describe(run_dir, config.to_dict(), {"device": str(device)})
    logger = Logger(run_dir, save_tb=config.save_tb)
    label = f"{config.agent} {config.task} s{config.seed}"
    bar = _Progress(progress, config.agent_steps * config.action_repeat, label)

    curve: list[tuple[int, float]] = []
    failed: str | None = None
    repeat, total, every = config.action_repeat, config.agent_steps, config.eval_every_agent_steps
    train_start = time.time()

    def checkpoint(step: int) -> None:
        t0 = time.time()
        frames: list[np.ndarray] | None = [] if (config.save_video and run_dir) else None
        returns = evaluate(eval_env, agent, config.num_eval_episodes, frames)
        env_step = step * repeat
        curve.append((env_step, float(np.mean(returns))))
        logger.eval(env_step, returns, time.time() - t0)
        bar.eval(env_step, curve[-1][1])
        if run_dir:
            save_checkpoint_files(run_dir, config, env_step, frames, agent.state_dict, replay)
        if on_checkpoint is not None:
            on_checkpoint(tuple(curve))

    episode, over = 0, True
    episode_return, episode_start, sums, counts = 0.0, time.time(), {}, {}
    step = 0
    for step in range(total):
        if step % every == 0:
            checkpoint(step)
        if over:
            if step > 0:
                logger.train(episode_row(step, repeat, episode, episode_return,
                                         time.time() - episode_start, env.max_episode_steps,
                                         sums, counts))
            obs = env.reset()
            replay.start_episode(obs)
            over, episode_return, episode_start, sums, counts = False, 0.0, time.time(), {}, {}
            episode += 1

        if step < config.init_steps:
            action = env.sample_action()
        else:
            action = agent.act(obs, sample=True)
            metrics = agent.update(replay, step, diagnostics=step % config.log_interval == 0)
            failed = divergence(metrics, step * repeat)
            if failed:
                break
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1

        obs, reward, over, terminal = env.step(action)
        replay.add(action, reward, obs, terminal)
        episode_return += reward
        bar.show(step * repeat)
    else:
        checkpoint(total)

    bar.close()
    logger.close()
    return finish(curve, failed, wall_start, train_start, run_dir, config.seed,
                  env_steps=(step if failed else total) * repeat)
