"""What the search knows about each candidate: its trials' results and its population-table row.

A genome's candidate seed climbs the rungs; one stopped at a rung is ranked there, by the
AULC it had at that rung; one that reaches the top gets its finalist seeds, and its
fitness is the mean over all its seeds, with a standard error. Rejected and duplicate
proposals are rows too, so the table is the whole history of the search, in the order
candidates were proposed.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from spaces import Genome

ROW_COLUMNS = (
    "id", "genome", "auxi_pred_horizon", "auxi_pred_input_s", "auxi_pred_input_a",
    "auxi_pred_input_r", "auxi_pred_input_s_", "auxi_pred_output_s", "auxi_pred_output_a",
    "auxi_pred_output_r", "auxi_pred_output_s_", "similarity_metric", "penalize_negative",
    "generation", "parents", "operator", "status", "reject_reason", "fitness", "fitness_se",
    "final_return", "seeds", "stopped_at", "steps", "wall_s", "worker", "error")

# `running` (an addition to interfaces.md): a genome with trials still out; `stopped`: its
# candidate seed was stopped at a rung (fitness = its AULC there, stopped_at = the rung).
STATUSES = ("trained", "rejected", "failed", "duplicate", "running", "stopped")
KINDS = ("candidate", "finalist")   # a trial's kind: the seed that climbs the rungs, or an extra seed


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A proposed genome (canonical) and where it came from."""

    genome: Genome
    generation: int
    parents: tuple[str, ...]
    operator: str

    @functools.cached_property
    def id(self) -> str:
        return self.genome.id

    @functools.cached_property
    def text(self) -> str:
        """The canonical string (cached: it is rebuilt for every row and state save)."""
        return str(self.genome)

    @functools.cached_property
    def columns(self) -> dict[str, Any]:
        """The row's fixed columns; cached because the driver asks for the whole table
        after every result, and printing the flags dominates building a row."""
        return {"id": self.id, "genome": self.text, **self.genome.to_flags(),
                "generation": self.generation, "parents": ";".join(self.parents),
                "operator": self.operator}

    def to_dict(self) -> dict[str, Any]:
        return {"genome": self.text, "generation": self.generation,
                "parents": list(self.parents), "operator": self.operator}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Candidate":
        return cls(Genome.parse(data["genome"]), int(data["generation"]),
                   tuple(data["parents"]), data["operator"])


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training run to do: a candidate on one RL seed."""

    key: str            # f"{id}-s{seed}": unique, a genome never gets the same seed twice
    candidate: Candidate
    seed: int
    kind: str           # "candidate" | "finalist"
    stoppable: bool = False   # may be stopped at a rung (a candidate seed after generation 0)


@dataclasses.dataclass(frozen=True)
class SeedResult:
    fitness: float | None   # None = this seed failed
    final_return: float | None = None
    error: str | None = None
    wall_s: float | None = None
    worker: str | None = None
    steps: int | None = None
    stopped_at: int | None = None   # the rung (env step) it was stopped at


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def make_result(fitness, final_return=None, error=None, wall_s=None, worker=None,
                steps=None, stopped_at=None) -> SeedResult:
    """Normalise what tell() received: a missing or non-finite fitness is a failed seed
    (JSON has no NaN, and a NaN must not win or lose a ranking silently)."""
    fit = _finite(fitness)
    if fit is None and error is None:
        error = "no fitness reported" if fitness is None else f"non-finite fitness {fitness}"
    return SeedResult(fit if error is None else None, _finite(final_return), error,
                      _finite(wall_s), worker, None if steps is None else int(steps),
                      None if stopped_at is None else int(stopped_at))


@dataclasses.dataclass
class GenomeRecord:
    """A genome that got training (counted against the budget), with its seeds' results."""

    candidate: Candidate
    birth: int                                   # 0-based order among trained genomes
    seeds: dict[int, str]                        # seed -> trial kind, in issue order
    results: dict[int, SeedResult] = dataclasses.field(default_factory=dict)

    def _told(self, kind: str | None = None) -> list[SeedResult]:
        return [self.results[s] for s, k in self.seeds.items()
                if s in self.results and (kind is None or k == kind)]

    @property
    def complete(self) -> bool:
        """Every seed issued so far told (finalist seeds are issued when the candidate
        seed reaches the top, so a finalist is complete only once they are in)."""
        return all(s in self.results for s in self.seeds)

    @property
    def candidates_told(self) -> bool:
        return all(s in self.results for s, k in self.seeds.items() if k == "candidate")

    @property
    def stopped_at(self) -> int | None:
        """The rung its candidate seed was stopped at (the lowest, with several)."""
        stops = [r.stopped_at for r in self._told("candidate") if r.stopped_at is not None]
        return min(stops) if stops else None

    @property
    def reached_top(self) -> bool:
        """Every candidate seed told, trained to the end, not failed."""
        told = self._told("candidate")
        return (self.candidates_told and bool(told)
                and all(r.stopped_at is None and r.fitness is not None for r in told))

    def _scores(self) -> list[float]:
        if self.stopped_at is not None:   # ranked where it stopped: its AULC up to that rung
            return [r.fitness for r in self._told("candidate")
                    if r.stopped_at == self.stopped_at and r.fitness is not None]
        return [r.fitness for r in self._told() if r.fitness is not None]

    @property
    def fitness(self) -> float | None:
        """Mean over the seeds that finished (at the rung it stopped at, if stopped); None
        while none has, or if all failed."""
        ok = self._scores()
        return sum(ok) / len(ok) if ok else None

    @property
    def fitness_se(self) -> float | None:
        """Standard error of that mean: std (ddof 1) / sqrt(n), with two seeds or more."""
        ok = self._scores()
        if len(ok) < 2:
            return None
        mean = sum(ok) / len(ok)
        return math.sqrt(sum((x - mean) ** 2 for x in ok) / (len(ok) - 1) / len(ok))

    @property
    def order(self) -> tuple[float, float]:
        """Best first when sorted ascending: the furthest rung reached (the top above any
        rung), then the fitness there. Never compares steps a genome did not train."""
        fit = self.fitness
        if fit is None:
            return (math.inf, math.inf)
        reached = math.inf if self.stopped_at is None else self.stopped_at
        return (-reached, -fit)

    @property
    def status(self) -> str:
        if not self.complete:
            return "running"
        if self.fitness is None:
            return "failed"
        return "stopped" if self.stopped_at is not None else "trained"

    def row_fields(self) -> dict[str, Any]:
        told = [self.results[s] for s in self.seeds if s in self.results]
        returns = [r.final_return for r in told if r.fitness is not None and r.final_return is not None]
        errors = [f"seed {s}: {self.results[s].error}" for s in self.seeds
                  if s in self.results and self.results[s].error]
        workers = list(dict.fromkeys(r.worker for r in told if r.worker))
        walls = [r.wall_s for r in told if r.wall_s is not None]
        steps = [r.steps for r in told if r.steps is not None]
        return {"fitness": self.fitness, "fitness_se": self.fitness_se,
                "final_return": sum(returns) / len(returns) if returns else None,
                "seeds": ";".join(str(s) for s in self.seeds),
                "stopped_at": self.stopped_at,
                "steps": max(steps) if steps else None,
                "wall_s": sum(walls) if walls else None,
                "worker": ";".join(workers) or None,
                "error": "; ".join(errors) or None}

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate.to_dict(), "birth": self.birth,
                "seeds": [[s, k] for s, k in self.seeds.items()],
                "results": [[s, dataclasses.asdict(r)] for s, r in self.results.items()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenomeRecord":
        return cls(Candidate.from_dict(data["candidate"]), int(data["birth"]),
                   {int(s): k for s, k in data["seeds"]},
                   {int(s): SeedResult(**r) for s, r in data["results"]})


def make_row(candidate: Candidate, status: str, reject_reason: str | None = None,
             **fields: Any) -> dict[str, Any]:
    """One population.csv row (columns in ROW_COLUMNS order)."""
    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    row.update(candidate.columns, status=status, reject_reason=reject_reason, **fields)
    return row
