"""The planted benchmark: search for a known genome, scored by similarity, without Ray.

``--fitness planted:a2-winner`` (or ``planted:<canonical genome>``) replaces RL training
by spaces.similarity to the planted genome (1.0 = found), so a strategy and its operator
rates can be compared over thousands of evaluations in seconds, and the search's
bookkeeping (budget, duplicates, restore) can be tested end to end.
"""
from __future__ import annotations

import collections
import operator
from typing import Any, Callable

from spaces import Genome, GenomeError, positions
from search.evolution.engine import Engine, EngineConfig
from search.evolution.operators import genome_from_text

PLANTED_PREFIX = "planted:"


def is_planted(fitness_spec: str) -> bool:
    return fitness_spec.startswith(PLANTED_PREFIX)


def parse_planted(fitness_spec: str) -> Genome:
    """The target of "planted:a2-winner" or "planted:k1 s10/a1/r0 > s01/a0/r0 mse".

    Raises ValueError with one line naming what is wrong."""
    if not is_planted(fitness_spec):
        raise ValueError(f"fitness {fitness_spec!r}: expected '{PLANTED_PREFIX}NAME' or "
                         f"'{PLANTED_PREFIX}<canonical genome>'")
    try:
        return genome_from_text(fitness_spec[len(PLANTED_PREFIX):])
    except GenomeError as err:
        raise ValueError(f"fitness {fitness_spec!r}: {err}") from None


def planted_fitness(target: Genome) -> Callable[[Genome], float]:
    """Fitness = spaces.similarity to the target: the fraction of the 64 positions on
    which a genome agrees with it. The target's positions are computed once (the same
    sum as spaces.similarity, twice as fast), which the benchmark's thousands of calls feel."""
    want = positions(target)

    def fitness(genome: Genome) -> float:
        return sum(map(operator.eq, positions(genome), want)) / len(want)

    return fitness


def drive(engine: Engine, fitness: Callable[[Genome], float], *, workers: int = 1,
          max_tells: int | None = None, until: float | None = None) -> int:
    """The driver loop with ``workers`` simulated workers: keep up to that many trials
    out, tell the oldest first. Deterministic, so a run can be replayed exactly.

    Stops when the engine is finished, after ``max_tells`` results, or once a score
    reaches ``until``. Returns the number of results told."""
    out: collections.deque = collections.deque()
    told = 0
    while not engine.finished and (max_tells is None or told < max_tells):
        while len(out) < workers:
            trial = engine.ask()
            if trial is None:
                break
            out.append(trial)
        if not out:
            raise RuntimeError("engine waits for results but none are in flight")
        trial = out.popleft()
        score = fitness(trial.candidate.genome)
        engine.tell(trial.key, score, final_return=score)
        told += 1
        if until is not None and score >= until:
            break
    return told


def run_planted(config: EngineConfig, target: Genome, *, workers: int = 1,
                until: float | None = None) -> list[dict[str, Any]]:
    """A whole search scored against ``target``; rows as Engine.rows(), fitness set."""
    engine = Engine(config)
    drive(engine, planted_fitness(target), workers=workers, until=until)
    return engine.rows()


def evaluations_to_find(rows: list[dict[str, Any]], threshold: float = 1.0) -> int | None:
    """How many genomes were trained up to and including the first that scored
    ``threshold`` (rejected and duplicate rows cost nothing); None if never."""
    trained = 0
    for row in rows:
        if row["status"] in ("trained", "failed", "running"):
            trained += 1
            if row["fitness"] is not None and row["fitness"] >= threshold:
                return trained
    return None
