"""Replay memory: our frame-once ring vs the released A2LS layout (SPEC defect 5).

    python bench/replay_memory.py --capacity 100000 --image_size 100 --frame_stack 3 [--fill N]

Prints the bytes our ReplayBuffer allocates and the bytes the released buffer allocates for the
same capacity (``obses`` and ``next_obses`` with all stacked frames, uint8 at the
pre-transform size, plus float32 actions, rewards and not-dones). Both use ``np.empty``, so
allocation is virtual; ``--fill N`` writes N synthetic frames (episodes of
``--episode_length`` steps) and reports how much the process's resident memory grew.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rl.replay import ReplayBuffer  # noqa: E402


def rss_bytes() -> int:
    """Resident set size from /proc/self/statm (second field, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def released_bytes(capacity: int, image_size: int, frame_stack: int, action_dim: int) -> int:
    obs = capacity * 3 * frame_stack * image_size * image_size  # uint8, stored twice
    return 2 * obs + capacity * action_dim * 4 + 2 * capacity * 4  # + rewards, not_dones


def fill(buffer: ReplayBuffer, frames: int, episode_length: int, image_size: int,
         frame_stack: int, action_dim: int) -> None:
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(3 * frame_stack, image_size, image_size), dtype=np.uint8)
    action = np.zeros(action_dim, np.float32)
    written = 0
    while written < frames:
        buffer.start_episode(obs)
        written += 1
        for _ in range(min(episode_length, frames - written)):
            obs = np.roll(obs, 1, axis=0)  # a different frame each step; content is irrelevant
            buffer.add(action, 0.0, obs, False)
            written += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--image_size", type=int, default=100)
    parser.add_argument("--frame_stack", type=int, default=3)
    parser.add_argument("--action_dim", type=int, default=6)
    parser.add_argument("--fill", type=int, default=0, help="synthetic frames to write")
    parser.add_argument("--episode_length", type=int, default=250)
    args = parser.parse_args(argv)
    for flag in ("capacity", "image_size", "frame_stack", "action_dim", "episode_length"):
        if getattr(args, flag) < 1:
            print(f"--{flag}: must be >= 1, got {getattr(args, flag)}", file=sys.stderr)
            return 2
    if args.fill < 0:
        print(f"--fill: must be >= 0, got {args.fill}", file=sys.stderr)
        return 2

    before = rss_bytes()
    try:
        buffer = ReplayBuffer(args.capacity, (3, args.image_size, args.image_size), np.uint8,
                              args.action_dim, frame_stack=args.frame_stack)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    ours = buffer.nbytes
    theirs = released_bytes(args.capacity, args.image_size, args.frame_stack, args.action_dim)
    print(f"capacity {args.capacity}, frames 3x{args.image_size}x{args.image_size} uint8, "
          f"frame_stack {args.frame_stack}, action_dim {args.action_dim}")
    print(f"ours (each frame once):            {ours / 1e9:8.3f} GB allocated")
    print(f"released A2LS (obs + next_obs):    {theirs / 1e9:8.3f} GB allocated "
          f"({theirs / ours:.1f}x ours)")
    print(f"RSS after allocation:              {(rss_bytes() - before) / 1e9:8.3f} GB more "
          f"(np.empty commits nothing until written)")
    if args.fill:
        start = time.perf_counter()
        fill(buffer, args.fill, args.episode_length, args.image_size, args.frame_stack,
             args.action_dim)
        grown = rss_bytes() - before
        written = min(args.fill, args.capacity)
        per_frame = grown / max(written, 1)
        print(f"after writing {args.fill} frames:       {grown / 1e9:8.3f} GB more RSS "
              f"({per_frame / 1e3:.1f} kB per stored frame; {time.perf_counter() - start:.1f} s), "
              f"{len(buffer)} sampleable transitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
