"""The planted benchmark: search for a known genome, scored by similarity, without Ray.

``--fitness planted:a2-winner`` (or ``planted:<canonical genome>``, or a name of
:data:`PLANTED_TARGETS`) replaces RL training by spaces.similarity to the planted genome
(1.0 = found), so a strategy and its operator rates can be compared over thousands of
evaluations in seconds, and the search's bookkeeping (budget, duplicates, restore) can be
tested end to end.

Real fitness is noisy (issue 13): on cheetah_run states at 100k steps one loss's
seed-to-seed std of AULC (A2-winner: 31) is about the spread between random genomes (27;
SPEC section 4b). :class:`PlantedFitness` mirrors that: each (genome, seed) scores the
similarity plus Gaussian noise whose std is ``noise`` times the std of the similarity over
random genomes, drawn from the search's seed and the (genome, seed), and noisier at a lower
rung. :func:`evaluate` runs a trial through the search's protocol (rung stops; the engine
adds and averages finalist seeds).
"""
from __future__ import annotations

import collections
import functools
import math
import operator
import random
import statistics
from typing import Any, Callable, Sequence

from spaces import Genome, GenomeError, positions
from search.evolution.engine import Engine, EngineConfig, Trial
from search.evolution.operators import genome_from_text, random_genome

PLANTED_PREFIX = "planted:"
SPREAD_DRAWS = 2000   # random genomes behind a target's similarity std (its estimate: +/- 1.6%)

# Targets of the benchmark, fixed so that results compare across runs. The random ones were
# drawn once (seeds 1, 2, 3: each mask bit with chance 0.3 at the given horizon, redrawn
# until the rejection protocol accepts it and its canonical horizon is that one) and are
# kept as text, so a change of the sampler cannot move them.
PLANTED_TARGETS: dict[str, Genome] = {name: genome_from_text(text) for name, text in (
    ("a2-winner", "a2-winner"),
    ("a2-winner-v", "a2-winner-v"),
    ("random-k2", "k2 s100/a10/r00 > s011/a00/r01 cos_sim+neg"),
    ("random-k6", "k6 s0011000/a000010/r000000 > s1110000/a001101/r000100 inner_product"),
    ("random-k10", "k10 s10000110110/a0000100000/r1000100000 > s00000011100/a0000000000/"
                   "r0001000001 bilinear_inner_product+neg"),
)}


def is_planted(fitness_spec: str) -> bool:
    return fitness_spec.startswith(PLANTED_PREFIX)


def parse_planted(fitness_spec: str) -> Genome:
    """The target of "planted:a2-winner", "planted:random-k6" or "planted:k1 s10/a1/r0 >
    s01/a0/r0 mse".

    Raises ValueError with one line naming what is wrong."""
    if not is_planted(fitness_spec):
        raise ValueError(f"fitness {fitness_spec!r}: expected '{PLANTED_PREFIX}NAME' or "
                         f"'{PLANTED_PREFIX}<canonical genome>'")
    text = fitness_spec[len(PLANTED_PREFIX):].strip()
    if text in PLANTED_TARGETS:
        return PLANTED_TARGETS[text]
    try:
        return genome_from_text(text)
    except GenomeError as err:
        raise ValueError(f"fitness {fitness_spec!r}: {err} (planted targets: "
                         f"{', '.join(PLANTED_TARGETS)})") from None


def planted_fitness(target: Genome) -> Callable[[Genome], float]:
    """Fitness = spaces.similarity to the target: the fraction of the 64 positions on
    which a genome agrees with it. The target's positions are computed once (the same
    sum as spaces.similarity, twice as fast), which the benchmark's thousands of calls feel."""
    want = positions(target)

    def fitness(genome: Genome) -> float:
        return sum(map(operator.eq, positions(genome), want)) / len(want)

    return fitness


@functools.lru_cache(maxsize=64)
def similarity_spread(target: Genome, density: float = 0.3) -> float:
    """The std of the similarity to ``target`` over random genomes as the search draws them
    (operators.random_genome, ``density`` as EngineConfig.init_density): the unit of the
    noise. A fixed draw, so a target's unit is the same in every run."""
    rng, score = random.Random(f"planted-spread-{density}"), planted_fitness(target)
    return statistics.stdev(score(random_genome(rng, density)) for _ in range(SPREAD_DRAWS))


def check_noise(noise: float) -> float:
    """A noise level as a float; ValueError (one line) unless a finite number >= 0."""
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or \
            not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"planted noise: expected a number >= 0, got {noise!r}")
    return float(noise)


class PlantedFitness:
    """Similarity to ``target`` plus noise, the same for the same (search seed, genome, seed).

    Args:
        target: the planted genome.
        noise: the std of one evaluation at the top rung, in units of
            :func:`similarity_spread` (0: exact, today's numbers; 1: the ratio measured on
            cheetah_run, SPEC section 4b).
        top_steps: env steps of a full run (num_train_steps); needed for rungs.
        density: of the random genomes that define the unit.
    """

    def __init__(self, target: Genome, noise: float = 0.0, *, top_steps: int | None = None,
                 density: float = 0.3) -> None:
        self.target = target
        self.noise = check_noise(noise)
        self.top_steps = top_steps
        self.std = self.noise * similarity_spread(target, density) if noise else 0.0
        self.true = planted_fitness(target)

    def __call__(self, genome: Genome) -> float:
        """The noise-free similarity."""
        return self.true(genome)

    def scores(self, genome: Genome, seed: int, search_seed: int, rungs: Sequence[int] = (),
               genome_id: str | None = None) -> list[float]:
        """One trial's approximate AULC at each rung, then at the top.

        An AULC is a mean over a run's checkpoints, so its error up to a fraction f of the
        run is modelled as S(f)/f, with S a Brownian motion of variance std^2 f: std/sqrt(f)
        at a rung (a lower rung is noisier) and std at the top, and a rung's error is part of
        the top's, as in one run. (The real AULC up to a rung also ranks differently from the
        top's for reasons other than noise, SPEC section 4b: not modelled.) ``genome_id``:
        genome.id, when the caller has it cached (Candidate.id)."""
        if rungs and not (self.top_steps and max(rungs) < self.top_steps):
            raise ValueError(f"rungs {tuple(rungs)}: need top_steps above them, got {self.top_steps}")
        true = self.true(genome)
        if not self.std:
            return [true] * (len(rungs) + 1)
        # a str seed is hashed with SHA-512 (never Python's hash()): the same in every process
        rng = random.Random(f"planted-noise-{search_seed}-{genome_id or genome.id}-{seed}")
        walked, before, out = 0.0, 0.0, []
        for fraction in [r / self.top_steps for r in rungs] + [1.0]:  # type: ignore[operator]
            walked += rng.gauss(0.0, self.std * math.sqrt(fraction - before))
            before = fraction
            out.append(true + walked / fraction)
        return out

    def cost(self, stopped_at: int | None) -> float:
        """A trial's compute in full runs: a trial stopped at a rung trained that far."""
        return 1.0 if stopped_at is None else stopped_at / self.top_steps  # type: ignore[operator]


def evaluate(engine: Engine, trial: Trial, fitness: PlantedFitness,
             rungs: bool = True) -> tuple[float, int | None]:
    """One trial through the search's protocol: a candidate seed reports at every rung
    (``engine.at_checkpoint``) and stops where the engine says; a finalist seed trains to
    the top. Returns (score, the rung it stopped at or None); the caller tells it."""
    steps = engine.config.rungs if rungs and trial.kind == "candidate" else ()
    *at_rungs, top = fitness.scores(trial.candidate.genome, trial.seed, engine.config.seed, steps,
                                    trial.candidate.id)
    for step, value in zip(steps, at_rungs):
        if not engine.at_checkpoint(trial.key, step, value):
            return value, step
    return top, None


def drive(engine: Engine, fitness: Callable[[Genome], float] | PlantedFitness, *,
          workers: int = 1, max_tells: int | None = None, until: float | None = None,
          max_runs: float | None = None) -> int:
    """The driver loop with ``workers`` simulated workers: keep up to that many trials
    out, tell the oldest first. Deterministic, so a run can be replayed exactly.

    A :class:`PlantedFitness` goes through :func:`evaluate` (rungs, noise); a plain
    function of the genome is told as it is. Stops when the engine is finished, after
    ``max_tells`` results, once a score reaches ``until``, or once ``max_runs`` full runs
    of compute are spent (PlantedFitness.cost). Returns the number of results told."""
    out: collections.deque = collections.deque()
    told, spent = 0, 0.0
    while not engine.finished and (max_tells is None or told < max_tells) and \
            (max_runs is None or spent < max_runs):
        while len(out) < workers:
            trial = engine.ask()
            if trial is None:
                break
            out.append(trial)
        if not out:
            raise RuntimeError("engine waits for results but none are in flight")
        trial = out.popleft()
        if isinstance(fitness, PlantedFitness):
            score, stopped_at = evaluate(engine, trial, fitness)
            spent += fitness.cost(stopped_at)
        else:
            score, stopped_at = fitness(trial.candidate.genome), None
            spent += 1.0
        engine.tell(trial.key, score, final_return=score, stopped_at=stopped_at,
                    steps=stopped_at)
        told += 1
        if until is not None and score >= until:
            break
    return told


def run_planted(config: EngineConfig, target: Genome, *, workers: int = 1,
                until: float | None = None, noise: float = 0.0,
                top_steps: int | None = None) -> list[dict[str, Any]]:
    """A whole search scored against ``target``; rows as Engine.rows(), fitness set. With
    ``noise`` or ``top_steps`` through :class:`PlantedFitness`: the config's rungs stop
    candidates (they need ``top_steps``); without, the exact similarity of each genome, the
    rungs unused (the benchmark as it was before noise)."""
    engine = Engine(config)
    fitness = PlantedFitness(target, noise, top_steps=top_steps) if noise or top_steps \
        else planted_fitness(target)
    drive(engine, fitness, workers=workers, until=until)
    return engine.rows()


def ranking(engine: Engine) -> list[Genome]:
    """The search's own ranking at its end: complete genomes by furthest rung, then
    fitness, then birth (as the verdict names its winners)."""
    ranked = sorted((r for r in engine.records() if r.fitness is not None and r.complete),
                    key=lambda r: (*r.order, r.birth))
    return [r.candidate.genome for r in ranked]


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
