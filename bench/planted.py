"""Planted benchmark: how many evaluations each strategy needs to find a planted genome.

    .venv/bin/python bench/planted.py [--target a2-winner] [--seeds 10] [--budget 5000] [--population 100]

For each seed, `generational` and `steady` search until a genome scores 1.0 (it is the
planted one) or the budget runs out; `random` spends the whole budget and we report the
best similarity it reached. Fitness is spaces.similarity, so the whole run takes seconds.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from search.evolution.engine import EngineConfig  # noqa: E402
from search.evolution.planted import PLANTED_PREFIX, evaluations_to_find, parse_planted, run_planted  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="a2-winner", help="named loss or canonical genome")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="simulated parallel trials")
    args = parser.parse_args(argv)
    try:
        target = parse_planted(PLANTED_PREFIX + args.target)
        base = EngineConfig(population=args.population, budget=args.budget)
    except ValueError as err:
        parser.error(str(err))
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers: expected integers >= 1")

    print(f"planted {target}  budget {args.budget}  population {args.population}  "
          f"workers {args.workers}  seeds 0..{args.seeds - 1}")
    print(f"rates bitflip {base.p_bitflip} crossover {base.p_crossover} horizon {base.p_horizon} "
          f"metric {base.p_metric} fresh {base.p_fresh}; survivors {base.survivor_fraction}, "
          f"tournament {base.tournament}")
    for strategy in ("generational", "steady"):
        start, needed = time.perf_counter(), []
        for seed in range(args.seeds):
            config = EngineConfig(strategy=strategy, population=args.population,
                                  budget=args.budget, seed=seed)
            found = evaluations_to_find(run_planted(config, target, workers=args.workers, until=1.0))
            needed.append(math.inf if found is None else found)
        hits = sum(math.isfinite(n) for n in needed)
        shown = " ".join("-" if math.isinf(n) else str(n) for n in needed)
        print(f"{strategy:>12}: median evaluations to find it {statistics.median(needed):g} "
              f"(found in {hits}/{args.seeds}; per seed: {shown}) [{time.perf_counter() - start:.1f}s]")
    start, best = time.perf_counter(), []
    for seed in range(args.seeds):
        config = EngineConfig(strategy="random", population=args.population, budget=args.budget, seed=seed)
        rows = run_planted(config, target, workers=args.workers)
        best.append(max(r["fitness"] for r in rows if r["fitness"] is not None))
    found = sum(b == 1.0 for b in best)
    print(f"{'random':>12}: best fitness within {args.budget}: median {statistics.median(best):.4f} "
          f"(min {min(best):.4f}, max {max(best):.4f}; found in {found}/{args.seeds}) "
          f"[{time.perf_counter() - start:.1f}s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
