"""The evolution engine: ask for a trial, tell its score; plain Python, its own seeded RNG.

The driver loop lives outside (Ray Tune in search/runs/tuner.py, a plain loop for the
planted benchmark in search/evolution/planted.py). The engine decides what to train next,
keeps the budget, refuses children the loss-rejection protocol refuses and genomes already
trained (SPEC section 4), says at each rung whether a candidate goes on
(:meth:`Engine.at_checkpoint`), gives a candidate that reaches the top its finalist seeds,
averages a genome's seeds, and saves/restores its whole state as JSON, in-flight trials
and rung records included.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Iterable

from spaces import reject_reason
from search.evolution.config import EngineConfig
from search.evolution.operators import choose_operator, genome_from_text, random_genome, vary
from search.evolution.records import (ROW_COLUMNS, STATUSES, Candidate, GenomeRecord, Trial, make_result,
                                      make_row)
from search.evolution.rungs import Rungs
from search.evolution.strategies import STRATEGIES, Slot

__all__ = ["EngineConfig", "Candidate", "Trial", "Engine", "ROW_COLUMNS", "STATUSES"]

SEED_RANGE = 2**31 - 1
FORMAT = 2   # of the state: 2 added rungs and finalist seeds (and dropped elite re-runs)


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
        self._rungs = Rungs(config.rungs, config.reduction)

    # ------------------------------------------------------------------ ask/tell
    def ask(self) -> Trial | None:
        """The next trial to run, or None: wait for results (generation barrier, steady
        search before anything is evaluated, the last results) or finished."""
        if self._requeue:
            return self._in_flight[self._requeue.pop(0)]
        if self._pending:
            trial = self._pending.pop(0)
            self._in_flight[trial.key] = trial
            return trial
        if self.trained < self.config.budget:
            slot = self._strategy.slot(self.trained, len(self._in_flight), self._records)
            if slot is None:
                return None
            self._register(self._propose(slot))
            return self.ask()
        return None

    def at_checkpoint(self, key: str, env_step: int, aulc: float) -> bool:
        """A candidate trial's AULC so far at an evaluation: recorded at a rung, and False
        when it is to be stopped there (only a stoppable trial ever is)."""
        trial = self._in_flight.get(key)
        if trial is None or trial.kind != "candidate" or env_step not in self._rungs.values:
            return True
        if not trial.stoppable:
            self._rungs.record(key, env_step, aulc)
            return True
        return self._rungs.keep(key, env_step, aulc)

    def tell(self, key: str, fitness: float | None, *, final_return: float | None = None,
             error: str | None = None, wall_s: float | None = None, worker: str | None = None,
             steps: int | None = None, stopped_at: int | None = None) -> None:
        """Record one trial's result. ``fitness=None`` (or non-finite) means the seed failed;
        ``stopped_at``: it was stopped at that rung, and ``fitness`` is its AULC there."""
        trial = self._in_flight.get(key)
        if trial is None:
            raise ValueError(f"tell: no trial {key!r} is in flight")
        if stopped_at is not None and not trial.stoppable:
            raise ValueError(f"tell: {key} was stopped at {stopped_at}, but it may not be stopped")
        del self._in_flight[key]
        if key in self._requeue:
            self._requeue.remove(key)
        record = self._records[trial.candidate.id]
        record.results[trial.seed] = make_result(fitness, final_return, error, wall_s, worker,
                                                 steps, stopped_at)
        if trial.kind == "candidate" and record.reached_top and self.config.finalist_seeds and \
                "finalist" not in record.seeds.values():
            seeds = self._draw_seeds(self.config.finalist_seeds, set(record.seeds))
            record.seeds.update(dict.fromkeys(seeds, "finalist"))
            # first in line: the genome counts for selection only once they are told
            self._pending[:0] = [self._trial(record, s) for s in seeds]
        if record.complete:
            self._strategy.on_complete(trial.candidate.id, self._records)

    @property
    def finished(self) -> bool:
        """Budget trained (finalist seeds included), nothing in flight."""
        return self.trained >= self.config.budget and not self._pending and not self._in_flight

    def generation_sizes(self) -> list[int] | None:
        """Genomes per generation under the budget (generational strategy), else None."""
        return self._strategy.sizes(self.config.budget)

    def in_flight(self) -> list[Trial]:
        return list(self._in_flight.values())

    def running(self) -> int:
        """Trials handed out and not told yet (not counting those to hand out again)."""
        return len(self._in_flight) - len(self._requeue)

    def jobs_left(self) -> int:
        """Trials not handed out yet, by the budget (the simple Eta's count and the resume
        note's; the forecast plays the engine itself; those in flight when the engine was
        restored are handed out again, so they count too). The finalist seeds
        of genomes not yet trained are estimated: every first-generation genome reaches the
        top, a later one with chance (1/reduction)^rungs; so are those of the candidates in
        flight."""
        c = self.config
        born, first = self.trained, c.population
        to_come = c.budget - born
        first_to_come = max(0, min(first, c.budget) - born)
        later = (1 / c.reduction) ** len(c.rungs)
        finalists = first_to_come + (to_come - first_to_come) * later
        finalists += sum(later if t.stoppable else 1.0 for t in self._in_flight.values()
                         if t.kind == "candidate")
        return round(to_come * c.seeds_per_candidate + finalists * c.finalist_seeds
                     + len(self._pending) + len(self._requeue))

    def records(self) -> list[GenomeRecord]:
        """The trained genomes, in birth order (read only)."""
        return list(self._records.values())

    @property
    def rung_values(self) -> dict[int, dict[str, float]]:
        """Rung step -> trial key -> AULC so far there (read only)."""
        return {step: dict(values) for step, values in self._rungs.values.items()}

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

    def _draw_seeds(self, n: int, used: set[int]) -> list[int]:
        seeds: list[int] = []
        while len(seeds) < n:
            seed = self._rng.randint(1, SEED_RANGE)
            if seed not in used and seed not in seeds:
                seeds.append(seed)
        return seeds

    def _trial(self, record: GenomeRecord, seed: int) -> Trial:
        kind = record.seeds[seed]
        # The first `population` genomes (the first generation) train to the top unstopped:
        # their curves say where rungs may be (the report's per-rung Spearman figures).
        stoppable = (bool(self.config.rungs) and kind == "candidate"
                     and record.birth >= self.config.population)
        return Trial(f"{record.candidate.id}-s{seed}", record.candidate, seed, kind, stoppable)

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
        best = min((r for r in self._records.values() if r.fitness is not None),
                   key=lambda r: r.order, default=None)
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

        return {"format": FORMAT, "config": dataclasses.asdict(self.config),
                "rng": [version, list(internal), gauss],
                "records": [r.to_dict() for r in self._records.values()],
                "rows": [row(e) for e in self._rows],
                "pending": [trial(t) for t in self._pending],
                "in_flight": [trial(t) for t in self._in_flight.values()],
                "seeds_used": self._seeds_used, "rungs": self._rungs.state_dict(),
                "strategy": self._strategy.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], running: Iterable[str] = ()) -> "Engine":
        """Continue a saved run; trials that were in flight are handed out again first,
        but those in ``running`` (a forecast's copy: they are being trained) stay in flight.
        Format 1 (before rungs and finalist seeds) reads as a search with neither."""
        if state.get("format") not in (1, FORMAT):
            raise ValueError(f"its format is {state.get('format')!r}, this code reads formats "
                             f"1 and {FORMAT}")
        engine = cls(EngineConfig.from_dict(state["config"]))
        version, internal, gauss = state["rng"]
        engine._rng.setstate((version, tuple(internal), gauss))
        for data in state["records"]:
            record = GenomeRecord.from_dict(data)
            engine._records[record.candidate.id] = record

        def trial(data: dict[str, Any]) -> Trial:
            record = engine._records[data["id"]]
            return engine._trial(record, int(data["seed"]))

        for kind, *rest in state["rows"]:
            engine._rows.append((kind, rest[0]) if kind == "genome"
                                else (kind, Candidate.from_dict(rest[0]), rest[1]))
        engine._pending = [trial(t) for t in state["pending"]]
        engine._in_flight = {t["key"]: trial(t) for t in state["in_flight"]}
        running = set(running)
        engine._requeue = [key for key in engine._in_flight if key not in running]
        engine._seeds_used = int(state["seeds_used"])
        engine._rungs.load_state_dict(state.get("rungs", {}))
        engine._strategy.load_state_dict(state["strategy"])
        return engine

