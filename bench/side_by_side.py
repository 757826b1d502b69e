"""How much slower a run is beside others: the start-up probe (rl.probe) of the cpu preset's
training config in one process alone, then in N processes at once, alternated.

    .venv/bin/python bench/side_by_side.py [--at_once 2] [--rounds 3] [--seconds 6]

One torch thread a process, as a trial has. Prints each round's mean update time alone and
side by side, and their ratio: what search/runs/probe.py measures by running as many probes
at once as trials will run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics


def _probe(seconds: float, queue) -> None:
    from rl.probe import probe
    from search.commands.presets import build_setup

    times = probe(build_setup("cpu").train.replace(seed=1, device="cpu"), seconds=seconds,
                  threads=1)
    queue.put(times.update_s)


def timed(n: int, seconds: float) -> float:
    """Mean update seconds over ``n`` probes started together."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_probe, args=(seconds, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    values = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return statistics.mean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at_once", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    ratios = []
    for r in range(args.rounds):
        alone, beside = timed(1, args.seconds), timed(args.at_once, args.seconds)
        ratios.append(beside / alone)
        print(f"round {r + 1}: update alone {alone * 1e3:.1f} ms, {args.at_once} at once "
              f"{beside * 1e3:.1f} ms: {ratios[-1]:.2f}x", flush=True)
    print(json.dumps({"at_once": args.at_once, "median_ratio": round(statistics.median(ratios), 3)}))


if __name__ == "__main__":
    main()
