"""The evolution engine: ask for a trial, tell its score; plain Python, its own seeded RNG.

The driver loop lives outside (Ray Tune in search/runs/tuner.py, a plain loop for the
planted benchmark in search/evolution/planted.py). The engine decides what to train next, keeps
the budget, refuses children the loss-rejection protocol refuses and genomes already
trained (SPEC section 4), averages a genome's seeds, and saves/restores its whole state
as JSON, in-flight trials included.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any

from spaces import Genome, reject_reason
from search.evolution.operators import OPERATORS, choose_operator, genome_from_text, random_genome, vary
from search.evolution.records import (ROW_COLUMNS, STATUSES, Candidate, GenomeRecord, Trial, make_result,
                            make_row)
from search.evolution.strategies import STRATEGIES, Slot

__all__ = ["EngineConfig", "Candidate", "Trial", "Engine", "ROW_COLUMNS", "STATUSES"]

SEED_RANGE = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    strategy: str = "generational"        # "generational" | "steady" | "random"
    population: int = 100
    budget: int = 100                     # distinct genomes to train
    seeds_per_candidate: int = 1
    elite_reevals: int = 0                # after the budget: top-N re-run on fresh seeds
    survivor_fraction: float = 0.25
    tournament: int = 5                   # steady: tournament size
    # Relative operator rates (normalised when drawn), tuned on the planted benchmark.
    p_bitflip: float = 0.45
    p_crossover: float = 0.3
    p_horizon: float = 0.1
    p_metric: float = 0.1
    p_fresh: float = 0.05
    seed_losses: tuple[str, ...] = ()     # named losses or canonical genomes, first in the initial population
    seed: int = 0
    init_density: float = 0.3             # chance of each mask bit in a random genome
    max_attempts: int = 100               # refused children in a row before a fresh random genome

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"{name}: expected {want}, got {getattr(self, name)!r}")

        if self.strategy not in STRATEGIES:
            raise bad("strategy", f"one of {', '.join(STRATEGIES)}")
        for name, low in (("population", 2), ("budget", 1), ("seeds_per_candidate", 1),
                          ("elite_reevals", 0), ("tournament", 1), ("max_attempts", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"an integer >= {low}")
        if not 0 < self.survivor_fraction < 1:
            raise bad("survivor_fraction", "a number in (0, 1)")
        if not 0 < self.init_density <= 1:
            raise bad("init_density", "a number in (0, 1]")
        if any(not rate >= 0 for rate in self.rates.values()) or sum(self.rates.values()) <= 0:
            raise ValueError(f"operator rates: expected numbers >= 0, not all 0, got {self.rates}")
        object.__setattr__(self, "seed_losses", tuple(self.seed_losses))
        if len(self.seed_losses) > self.population:
            raise bad("seed_losses", f"at most population={self.population} losses")
        for text in self.seed_losses:
            genome_from_text(text)  # raises GenomeError (a ValueError), one line
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("seed", "an integer")

    @property
    def rates(self) -> dict[str, float]:
        return {name: getattr(self, f"p_{name}") for name in OPERATORS}


class Engine:
    """Ask/tell evolution over auxiliary-loss genomes (see module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._strategy = STRATEGIES[config.strategy](
            config.population, config.survivor_fraction, config.tournament)
        self._records: dict[str, GenomeRecord] = {}   # trained genomes by id, in birth order
        self._rows: list[tuple] = []                   # ("genome", id) | ("rejected", Candidate, reason) | ("duplicate", Candidate, id)
        self._pending: list[Trial] = []                # made, not yet handed out
        self._in_flight: dict[str, Trial] = {}         # handed out, not yet told (issue order)
        self._requeue: list[str] = []                  # in flight when restored: handed out again first
        self._seeds_used = 0                           # seed losses consumed
        self._elites_issued = False

    # ------------------------------------------------------------------ ask/tell
    def ask(self) -> Trial | None:
        """The next trial to run, or None: wait for results (generation barrier, steady
        search before anything is evaluated, elites before the last result) or finished."""
        if self._requeue:
            return self._in_flight[self._requeue.pop(0)]
        if self._pending:
            trial = self._pending.pop(0)
            self._in_flight[trial.key] = trial
            return trial
        outstanding = len(self._in_flight)
        if self.trained < self.config.budget:
            slot = self._strategy.slot(self.trained, outstanding, self._records)
            if slot is None:
                return None
            self._register(self._propose(slot))
            return self.ask()
        if outstanding or self._elites_issued:
            return None
        self._issue_elites()
        return self.ask() if self._pending else None

    def tell(self, key: str, fitness: float | None, *, final_return: float | None = None,
             error: str | None = None, wall_s: float | None = None, worker: str | None = None,
             steps: int | None = None) -> None:
        """Record one trial's result. ``fitness=None`` (or non-finite) means the seed failed."""
        trial = self._in_flight.pop(key, None)
        if trial is None:
            raise ValueError(f"tell: no trial {key!r} is in flight")
        if key in self._requeue:
            self._requeue.remove(key)
        record = self._records[trial.candidate.id]
        record.results[trial.seed] = make_result(fitness, final_return, error, wall_s, worker, steps)
        if trial.kind == "candidate" and record.complete:
            self._strategy.on_complete(trial.candidate.id, self._records)

    @property
    def finished(self) -> bool:
        """Budget trained, elites re-evaluated, nothing in flight."""
        elites_done = self._elites_issued or self.config.elite_reevals == 0
        return (self.trained >= self.config.budget and elites_done
                and not self._pending and not self._in_flight)

    def in_flight(self) -> list[Trial]:
        return list(self._in_flight.values())

    def running(self) -> int:
        """Trials handed out and not told yet (not counting those to hand out again)."""
        return len(self._in_flight) - len(self._requeue)

    def jobs_left(self) -> int:
        """Trials not handed out yet, by the budget: the ETA's count (those in flight when
        the engine was restored are handed out again, so they count too)."""
        per = self.config.seeds_per_candidate
        left = (self.config.budget - self.trained) * per + len(self._pending) + len(self._requeue)
        if not self._elites_issued:
            left += self.config.elite_reevals * per
        return left

    @property
    def trained(self) -> int:
        """Distinct genomes handed out for training (what the budget counts)."""
        return len(self._records)

    # ------------------------------------------------------------------ proposals
    def _propose(self, slot: Slot) -> Candidate:
        """The next genome worth training; every refused proposal becomes a row."""
        config = self.config
        for attempt in range(config.max_attempts + 10_000):
            if slot.pick is None:
                candidate = self._initial(slot.generation)
            elif attempt >= config.max_attempts:
                # The survivors' neighbourhood is exhausted (e.g. one operator on a converged
                # population): escape with a fresh genome instead of looping forever.
                genome = random_genome(self._rng, config.init_density)
                candidate = Candidate(genome, slot.generation, (), "fallback")
            else:
                candidate = self._child(slot)
            reason = reject_reason(candidate.genome)
            if reason is not None:
                self._rows.append(("rejected", candidate, reason))
            elif candidate.id in self._records:
                self._rows.append(("duplicate", candidate, candidate.id))
            else:
                return candidate
        raise RuntimeError("search: no new genome found in 10,000 fresh draws")

    def _initial(self, generation: int) -> Candidate:
        if self._seeds_used < len(self.config.seed_losses):
            text = self.config.seed_losses[self._seeds_used]
            self._seeds_used += 1
            return Candidate(genome_from_text(text), generation, (), "seed")
        return Candidate(random_genome(self._rng, self.config.init_density), generation, (), "random")

    def _child(self, slot: Slot) -> Candidate:
        assert slot.pick is not None
        operator = choose_operator(self._rng, self.config.rates, slot.parents_available)
        arity = {"crossover": 2, "fresh": 0}.get(operator, 1)
        parents = slot.pick(self._rng, arity) if arity else []
        genomes = [self._records[p].candidate.genome for p in parents]
        genome = vary(self._rng, operator, genomes, self.config.init_density)
        return Candidate(genome, slot.generation, tuple(parents), operator)

    def _register(self, candidate: Candidate) -> None:
        seeds = self._draw_seeds(self.config.seeds_per_candidate, set())
        record = GenomeRecord(candidate, self.trained, dict.fromkeys(seeds, "candidate"))
        self._records[candidate.id] = record
        self._rows.append(("genome", candidate.id))
        self._strategy.on_born(candidate.id, self._records)
        self._pending += [self._trial(record, s) for s in seeds]

    def _issue_elites(self) -> None:
        """After the budget: the top-N genomes, each on fresh seeds (not counted)."""
        self._elites_issued = True
        ranked = sorted((r for r in self._records.values() if r.fitness is not None),
                        key=lambda r: (-r.rank_key, r.birth))
        for record in ranked[:self.config.elite_reevals]:
            seeds = self._draw_seeds(self.config.seeds_per_candidate, set(record.seeds))
            record.seeds.update(dict.fromkeys(seeds, "elite_reeval"))
            self._pending += [self._trial(record, s) for s in seeds]

    def _draw_seeds(self, n: int, used: set[int]) -> list[int]:
        seeds: list[int] = []
        while len(seeds) < n:
            seed = self._rng.randint(1, SEED_RANGE)
            if seed not in used and seed not in seeds:
                seeds.append(seed)
        return seeds

    @staticmethod
    def _trial(record: GenomeRecord, seed: int) -> Trial:
        return Trial(f"{record.candidate.id}-s{seed}", record.candidate, seed, record.seeds[seed])

    # ------------------------------------------------------------------ reports
    def rows(self) -> list[dict[str, Any]]:
        """One dict per proposal (population.csv columns, ROW_COLUMNS order), including
        rejected and duplicate ones; a duplicate shows the earlier genome's score."""
        out = []
        for kind, *rest in self._rows:
            if kind == "genome":
                record = self._records[rest[0]]
                out.append(make_row(record.candidate, record.status, **record.row_fields()))
            elif kind == "rejected":
                out.append(make_row(rest[0], "rejected", reject_reason=rest[1]))
            else:
                earlier = self._records[rest[1]].row_fields()
                out.append(make_row(rest[0], "duplicate", fitness=earlier["fitness"],
                                    final_return=earlier["final_return"]))
        return out

    def progress(self) -> dict[str, Any]:
        """Counts for a progress line (an addition to interfaces.md)."""
        best = max((r for r in self._records.values() if r.fitness is not None),
                   key=lambda r: r.rank_key, default=None)
        refused = [kind for kind, *_ in self._rows if kind != "genome"]
        return {"trained": self.trained, "budget": self.config.budget,
                "generation": max((r.candidate.generation for r in self._records.values()), default=0),
                "rejected": refused.count("rejected"), "duplicate": refused.count("duplicate"),
                "in_flight": len(self._in_flight), "pending": len(self._pending),
                "best_fitness": best.fitness if best else None,
                "best_id": best.candidate.id if best else None,
                "best_genome": str(best.candidate.genome) if best else None}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run, as JSON-serialisable data."""
        version, internal, gauss = self._rng.getstate()

        def trial(t: Trial) -> dict[str, Any]:
            return {"key": t.key, "id": t.candidate.id, "seed": t.seed, "kind": t.kind}

        def row(entry: tuple) -> list:
            kind, *rest = entry
            if kind == "genome":
                return [kind, rest[0]]
            return [kind, rest[0].to_dict(), rest[1]]

        return {"format": 1, "config": dataclasses.asdict(self.config),
                "rng": [version, list(internal), gauss],
                "records": [r.to_dict() for r in self._records.values()],
                "rows": [row(e) for e in self._rows],
                "pending": [trial(t) for t in self._pending],
                "in_flight": [trial(t) for t in self._in_flight.values()],
                "seeds_used": self._seeds_used, "elites_issued": self._elites_issued,
                "strategy": self._strategy.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Engine":
        """Continue a saved run; trials that were in flight are handed out again first."""
        if state.get("format") != 1:
            raise ValueError(f"its format is {state.get('format')!r}, this code reads format 1")
        engine = cls(EngineConfig(**state["config"]))
        version, internal, gauss = state["rng"]
        engine._rng.setstate((version, tuple(internal), gauss))
        for data in state["records"]:
            record = GenomeRecord.from_dict(data)
            engine._records[record.candidate.id] = record

        def trial(data: dict[str, Any]) -> Trial:
            record = engine._records[data["id"]]
            return Trial(data["key"], record.candidate, int(data["seed"]), data["kind"])

        for kind, *rest in state["rows"]:
            engine._rows.append((kind, rest[0]) if kind == "genome"
                                else (kind, Candidate.from_dict(rest[0]), rest[1]))
        engine._pending = [trial(t) for t in state["pending"]]
        engine._in_flight = {t["key"]: trial(t) for t in state["in_flight"]}
        engine._requeue = list(engine._in_flight)
        engine._seeds_used = int(state["seeds_used"])
        engine._elites_issued = bool(state["elites_issued"])
        engine._strategy.load_state_dict(state["strategy"])
        return engine

