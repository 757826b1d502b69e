"""K members trained as one batched model (rl.population) against K sequential lone updates.

    python bench/population_speed.py --configs vector-64-64 vector-128-256 --members 1 4 16 64
    python bench/population_speed.py --configs pixel-84 --members 1 4 --steps 3
    python bench/population_speed.py --device cuda --synthetic --steps 10 \
        --configs vector-64-64 vector-128-256 pixel-84   # a GPU, < 5 min

Each row times the whole agent update (auxi_sac with the A2-winner loss, replay sampling
included) of a ``Population`` of K members against K lone agents (``rl.agent``) updated one
after the other, in this process, in alternating rounds (the order reversed every other
round, so a slow spell of the machine hits both alike). Configurations (cheetah_run shapes,
as ``bench/update_speed.py``: 17-d states, or 3x100x100 frames stacked 3 deep, cropped to
84; 6 actions): ``vector-128-256`` / ``vector-64-64`` (ofe 40 x 1, batch / hidden) and
``pixel-84`` (batch 128, hidden 1024). Each member samples its own replay of random data
(``update_speed.synthetic_replay``); ``--synthetic`` replaces the replays by fixed random
windows, built once (no ring buffer: a pixel replay per member does not fit in RAM at
K = 64), so the row times the update without the replay's index gather.

Then it measures this machine's dm_control step rate (one env of the config's
observations, ``--env_steps`` steps with random actions) and the act time of both sides, and
derives member runs and candidates per hour on one core: a member run of
``--candidate_steps`` env steps (action repeat 4; 1000 random steps first; evaluation of
10 episodes every 10k env steps, as the defaults) costs its updates plus its training and
evaluation env steps and actions; a cohort of K runs its K members' env steps one after the
other and batches their updates and actions. A candidate is ``--seeds_per_candidate``
member runs. ``--device cuda`` times both sides on the GPU (envs stay on the host).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rl.agent import make_agent  # noqa: E402
from rl.config import TrainConfig, resolve  # noqa: E402
from rl.envs import make_env  # noqa: E402
from rl.population import make_population  # noqa: E402
from rl.replay import Window  # noqa: E402
from update_speed import ACTION_DIM, EPISODE, FRAME, OBS_DIM, STACK, sync, synthetic_replay  # noqa: E402

CONFIGS = {
    "vector-128-256": dict(encoder_type="ofe", encoder_hidden_size=40, num_layers=1,
                           batch_size=128, hidden_dim=256),
    "vector-64-64": dict(encoder_type="ofe", encoder_hidden_size=40, num_layers=1,
                         batch_size=64, hidden_dim=64),
    "pixel-84": dict(encoder_type="pixel", num_layers=4, batch_size=128, hidden_dim=1024),
}
ACTION_REPEAT, INIT_STEPS, EVAL_EVERY, EVAL_EPISODES = 4, 1000, 10_000, 10


class FixedWindows:
    """Stands in for a replay without storing one: the same random windows of each
    (batch size, horizon) at every call, built once."""

    def __init__(self, pixels: bool, seed: int = 0):
        self.pixels, self.rng, self.cache = pixels, np.random.default_rng(seed), {}

    def sample(self, batch_size: int, horizon: int) -> Window:
        key = (batch_size, horizon)
        if key not in self.cache:
            stack = STACK if self.pixels else 1
            shape = (batch_size, horizon + stack, *(FRAME if self.pixels else (OBS_DIM,)))
            frames = (self.rng.integers(0, 256, shape, dtype=np.uint8) if self.pixels
                      else self.rng.standard_normal(shape, dtype=np.float32))
            self.cache[key] = Window(
                frames=frames,
                action=self.rng.uniform(-1, 1, (batch_size, horizon, ACTION_DIM)).astype(np.float32),
                reward=self.rng.standard_normal((batch_size, horizon), dtype=np.float32),
                not_done=np.ones((batch_size, horizon), np.float32), frame_stack=stack)
        return self.cache[key]


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def compare(config: TrainConfig, members: int, rounds: int, synthetic: bool,
            device: torch.device) -> dict:
    """Seconds per update of the population and of K sequential lone updates, and of one
    batched / K lone acts."""
    pixels = config.encoder_type == "pixel"
    shape = (3 * STACK, *FRAME[1:]) if pixels else (OBS_DIM,)
    seeds = list(range(1, members + 1))
    population = make_population(config, shape, ACTION_DIM, device, seeds)
    lone = []
    for seed in seeds:
        torch.manual_seed(seed)
        lone.append(make_agent(config.replace(seed=seed), shape, ACTION_DIM, device))
    transitions = max(2 * EPISODE, 4 * config.batch_size)
    replays = ([FixedWindows(pixels)] * members if synthetic
               else [synthetic_replay(pixels, transitions, seed) for seed in seeds])
    log = config.log_interval

    def batched(step):
        population.update(replays, step, diagnostics=step % log == 0)

    def sequential(step):
        for agent, replay in zip(lone, replays):
            agent.update(replay, step, diagnostics=step % log == 0)

    for step in range(2):  # warm-up (allocator, kernel caches)
        batched(step), sequential(step)
    times = {"batched": [], "sequential": []}
    for r in range(rounds):
        step = 2 + r
        order = ("batched", "sequential") if r % 2 == 0 else ("sequential", "batched")
        for name in order:
            fn = batched if name == "batched" else sequential
            times[name].append(timed(lambda: fn(step), device))
    obs = np.stack([replays[0].sample(1, 1).obs(0)[0]] * members)
    acts = {"batched": timed(lambda: [population.act(obs, True) for _ in range(20)], device) / 20,
            "sequential": timed(lambda: [a.act(o, True) for _ in range(20) for a, o in zip(lone, obs)],
                                device) / 20}
    ratios = sorted(s / b for b, s in zip(times["batched"], times["sequential"]))
    return {"batched": statistics.mean(times["batched"]),
            "sequential": statistics.mean(times["sequential"]),
            "median_ratio": ratios[len(ratios) // 2], "act": acts}


def env_step_seconds(pixels: bool, steps: int) -> float:
    env = make_env("cheetah_run", from_pixels=pixels, image_size=100, action_repeat=ACTION_REPEAT,
                   frame_stack=STACK if pixels else 1, seed=0)
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        _, _, over, _ = env.step(env.sample_action())
        if over:
            env.reset()
    return (time.perf_counter() - start) / steps


def runs_per_hour(row: dict, members: int, env_s: float, candidate_steps: int) -> tuple[float, float]:
    """Member runs an hour on one core: (cohort of K, K lone runs one after the other)."""
    agent_steps = candidate_steps // ACTION_REPEAT
    updates = agent_steps - INIT_STEPS
    eval_steps = (candidate_steps // EVAL_EVERY + 1) * EVAL_EPISODES * (1000 // ACTION_REPEAT)
    steps = agent_steps + eval_steps  # env steps and actions of one member
    cohort = updates * row["batched"] + members * steps * env_s + steps * row["act"]["batched"]
    alone = updates * row["sequential"] + members * steps * env_s + steps * row["act"]["sequential"]
    return 3600 * members / cohort, 3600 * members / alone


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["vector-64-64", "vector-128-256"])
    p.add_argument("--members", nargs="+", type=int, default=[1, 4, 16, 64])
    p.add_argument("--steps", type=int, default=20, help="timed updates of each side (rounds)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--synthetic", action="store_true", help="fixed random windows, no replay")
    p.add_argument("--env_steps", type=int, default=300, help="env steps timed (0: skip)")
    p.add_argument("--candidate_steps", type=int, default=100_000)
    p.add_argument("--seeds_per_candidate", type=int, default=3)
    a = p.parse_args(argv)
    if min(a.members + [a.steps, a.threads, a.candidate_steps, a.seeds_per_candidate]) < 1:
        p.error("--members, --steps, --threads, --candidate_steps, --seeds_per_candidate must be >= 1")
    try:
        device = torch.device(a.device)
    except RuntimeError:
        p.error(f"--device: unknown device {a.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"population_speed.py: --device {a.device}: torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {a.threads} thread(s)"
    print(f"device: {where}; torch {torch.__version__}; {'synthetic windows' if a.synthetic else 'replay per member'}")
    print(f"{'config':>15} {'K':>3} {'batched ms':>11} {'sequential ms':>14} {'member-upd/s batched':>21} "
          f"{'sequential':>11} {'ratio':>6} {'median':>7}", flush=True)
    rows = {}
    for name in a.configs:
        config = resolve(TrainConfig(domain_name="cheetah_run", device=a.device, **CONFIGS[name]))
        for k in a.members:
            row = rows[name, k] = compare(config, k, a.steps, a.synthetic, device)
            print(f"{name:>15} {k:>3} {1000 * row['batched']:>11.2f} {1000 * row['sequential']:>14.2f} "
                  f"{k / row['batched']:>21.1f} {k / row['sequential']:>11.1f} "
                  f"{row['sequential'] / row['batched']:>5.2f}x {row['median_ratio']:>6.2f}x", flush=True)
    if a.env_steps:
        print(f"\nmember runs of {a.candidate_steps} env steps an hour on one core "
              f"(candidates of {a.seeds_per_candidate} seeds in brackets)")
        for name in a.configs:
            pixels = CONFIGS[name]["encoder_type"] == "pixel"
            env_s = env_step_seconds(pixels, a.env_steps)
            print(f"{name}: env step {1000 * env_s:.2f} ms (action repeat {ACTION_REPEAT})")
            for k in a.members:
                cohort, alone = runs_per_hour(rows[name, k], k, env_s, a.candidate_steps)
                s = a.seeds_per_candidate
                print(f"  K={k:>3}: cohort {cohort:8.3g} ({cohort / s:.3g}), lone runs {alone:8.3g} "
                      f"({alone / s:.3g}), act {1000 * rows[name, k]['act']['batched']:.2f} ms batched "
                      f"vs {1000 * rows[name, k]['act']['sequential']:.2f} ms for K lone", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
