"""Planted benchmark: each strategy against several planted genomes, exact and with noise.

    .venv/bin/python bench/planted.py [--part all|find|noise] [--targets all] [--seeds 10]
        [--find_budget 5000] [--compute 1000] [--population 100] [--noise 0,0.5,1,2]
        [--strategies generational,steady,random]

find: for every target without noise, how many evaluations `generational` and `steady`
need to find it (a genome scoring 1.0 is the planted one), and the best similarity
`random` reaches with the same budget; for each seed that did not find it, where its best
genome differs from the target.

noise: for every strategy, target and noise level (search/evolution/planted.py: the std of
an evaluation, in units of the similarity's std over random genomes), the search runs
until ``--compute`` full runs of compute are spent (a trial stopped at a rung costs its
fraction), then reports how often the target is among the search's own top 5, the median
true (noise-free) similarity of its winner, and the trials (evaluations) and genomes used.
"protocol" is the cpu preset's: rungs at 50k and 70k of 100k steps, the top third going on,
2 finalist seeds averaged with the candidate's; "plain" is one seed a genome, no rungs.

Everything runs in this process, without Ray; markdown tables on stdout.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from search.evolution.engine import Engine, EngineConfig  # noqa: E402
from search.evolution.planted import (PLANTED_PREFIX, PLANTED_TARGETS, PlantedFitness, drive,  # noqa: E402
                                      evaluations_to_find, parse_planted, ranking, run_planted)
from search.evolution.strategies import STRATEGIES  # noqa: E402
from spaces import KINDS, MAX_HORIZON, Genome, positions  # noqa: E402
from spaces.genome import SIDES, max_offset  # noqa: E402

TOP_STEPS = 100_000
PROTOCOL = {"rungs": (50_000, 70_000), "reduction": 3.0, "finalist_seeds": 2}  # the cpu preset's
POSITION_NAMES = [f"{side} {kind}{offset}" for side in SIDES for kind in KINDS
                  for offset in range(max_offset(kind, MAX_HORIZON) + 1)] + ["metric", "negatives"]


def mismatches(genome: Genome, target: Genome) -> list[str]:
    """The positions (spaces.positions) on which ``genome`` differs from ``target``."""
    return [name for name, a, b in zip(POSITION_NAMES, positions(genome), positions(target)) if a != b]


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max((r for r in rows if r["fitness"] is not None and r["status"] != "duplicate"),
               key=lambda r: r["fitness"])


def find_part(targets: dict[str, Genome], seeds: int, budget: int, population: int) -> None:
    """Noise-free: evaluations to find each target, and random's best with that budget."""
    print(f"\n### Without noise: evaluations to find the target (budget {budget}, population "
          f"{population}, seeds 0..{seeds - 1})\n")
    print("| target | generational: median evaluations (found, min-max) | steady: median "
          "evaluations (found, min-max) | random: median best (min-max, found) | s |")
    print("|---|---|---|---|---|")
    misses: list[str] = []
    for name, target in targets.items():
        start, cells = time.perf_counter(), []
        for strategy in ("generational", "steady"):
            needed = []
            for seed in range(seeds):
                config = EngineConfig(strategy=strategy, population=population, budget=budget, seed=seed)
                rows = run_planted(config, target, until=1.0)
                found = evaluations_to_find(rows)
                needed.append(math.inf if found is None else found)
                if found is None:
                    best = best_row(rows)
                    off = mismatches(Genome.parse(best["genome"]), target)
                    misses.append(f"{name} {strategy} seed {seed}: best {best['fitness']:.4f} "
                                  f"({best['genome']}), off at {', '.join(off)}")
            hits = sum(math.isfinite(n) for n in needed)
            cells.append(f"{statistics.median(needed):g} ({hits}/{seeds}, {min(needed):g}-{max(needed):g})")
        best = []
        for seed in range(seeds):
            config = EngineConfig(strategy="random", population=population, budget=budget, seed=seed)
            best.append(best_row(run_planted(config, target))["fitness"])
        found = sum(b == 1.0 for b in best)
        cells.append(f"{statistics.median(best):.4f} ({min(best):.4f}-{max(best):.4f}, {found}/{seeds})")
        print(f"| {name} (k{target.horizon} {target.metric}{'+neg' if target.negatives else ''}) | "
              f"{' | '.join(cells)} | {time.perf_counter() - start:.0f} |", flush=True)
    if misses:
        print("\nNot found within the budget (the best genome of the seed, and where it differs):\n")
        for line in misses:
            print(f"- {line}")


def one_search(strategy: str, target: Genome, noise: float, protocol: bool, seed: int,
               compute: float, population: int) -> tuple[bool, float, int, int]:
    """(target in the final top 5, true similarity of the winner, trials told, genomes)."""
    extra: dict[str, Any] = dict(PROTOCOL, budget=2 * math.ceil(compute)) if protocol else \
        {"budget": math.ceil(compute)}
    engine = Engine(EngineConfig(strategy=strategy, population=population, seed=seed, **extra))
    fitness = PlantedFitness(target, noise, top_steps=TOP_STEPS)
    told = drive(engine, fitness, max_runs=compute)
    ranked = ranking(engine)
    hit = target.id in {g.id for g in ranked[:5]}
    return hit, fitness.true(ranked[0]) if ranked else math.nan, told, engine.trained


def noise_part(targets: dict[str, Genome], strategies: list[str], levels: list[float],
               seeds: int, compute: float, population: int) -> None:
    print(f"\n### With noise, at equal compute ({compute:g} full runs a search, population "
          f"{population}, seeds 0..{seeds - 1})\n")
    print("Per cell: top-5 hits out of the seeds; median true similarity of the winner; median "
          "trials told / genomes trained.\n")
    print("| target | strategy | noise | plain: top-5 | plain: winner | plain: trials/genomes "
          "| protocol: top-5 | protocol: winner | protocol: trials/genomes | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[tuple[str, float, bool], list[tuple[bool, float]]] = {}
    for name, target in targets.items():
        for strategy in strategies:
            for level in levels:
                start, cells = time.perf_counter(), []
                for protocol in (False, True):
                    runs = [one_search(strategy, target, level, protocol, seed, compute, population)
                            for seed in range(seeds)]
                    summary.setdefault((strategy, level, protocol), []).extend(r[:2] for r in runs)
                    cells += [f"{sum(r[0] for r in runs)}/{seeds}",
                              f"{statistics.median(r[1] for r in runs):.4f}",
                              f"{statistics.median(r[2] for r in runs):g}/"
                              f"{statistics.median(r[3] for r in runs):g}"]
                print(f"| {name} | {strategy} | {level:g} | {' | '.join(cells)} | "
                      f"{time.perf_counter() - start:.0f} |", flush=True)
    print(f"\n### Over all {len(targets)} targets ({len(targets) * seeds} searches a cell)\n")
    print("| strategy | noise | plain: top-5 | plain: median winner | protocol: top-5 "
          "| protocol: median winner |")
    print("|---|---|---|---|---|---|")
    for strategy in strategies:
        for level in levels:
            cells = []
            for protocol in (False, True):
                runs = summary[(strategy, level, protocol)]
                cells += [f"{sum(r[0] for r in runs)}/{len(runs)}",
                          f"{statistics.median(r[1] for r in runs):.4f}"]
            print(f"| {strategy} | {level:g} | {' | '.join(cells)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=("all", "find", "noise"))
    parser.add_argument("--targets", default="all",
                        help=f"comma-separated: {', '.join(PLANTED_TARGETS)}, named losses or "
                             f"canonical genomes (default all of the first)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--find_budget", type=int, default=5000, help="find: genomes a search")
    parser.add_argument("--compute", type=float, default=1000, help="noise: full runs a search")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--noise", default="0,0.5,1,2", help="noise: comma-separated levels")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args(argv)
    try:
        names = list(PLANTED_TARGETS) if args.targets == "all" else \
            [t.strip() for t in args.targets.split(",") if t.strip()]
        targets = {name: parse_planted(PLANTED_PREFIX + name) for name in names}
        levels = [float(x) for x in args.noise.split(",")]
        strategies = [s.strip() for s in args.strategies.split(",")]
        for strategy in strategies:
            EngineConfig(strategy=strategy, population=args.population)
        if args.seeds < 1 or args.find_budget < 1 or not args.compute > 0 or min(levels) < 0:
            raise ValueError("--seeds, --find_budget, --compute: expected > 0; --noise: >= 0")
    except ValueError as err:
        parser.error(str(err))

    base = EngineConfig()
    print(f"targets: {'; '.join(f'{n} = {g}' for n, g in targets.items())}")
    print(f"rates bitflip {base.p_bitflip} crossover {base.p_crossover} horizon {base.p_horizon} "
          f"metric {base.p_metric} fresh {base.p_fresh}; survivors {base.survivor_fraction}, "
          f"tournament {base.tournament}, init density {base.init_density}")
    start = time.perf_counter()
    if args.part in ("all", "find"):
        find_part(targets, args.seeds, args.find_budget, args.population)
    if args.part in ("all", "noise"):
        noise_part(targets, strategies, levels, args.seeds, args.compute, args.population)
    print(f"\n[{time.perf_counter() - start:.0f} s in all]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
