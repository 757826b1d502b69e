"""What the search knows about each candidate: its trials' results and its population-table row.

A genome is trained on several seeds (and elites again later); its fitness is the mean
over the seeds that finished. Rejected and duplicate proposals are rows too, so the table
is the whole history of the search, in the order candidates were proposed.
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
    "generation", "parents", "operator", "status", "reject_reason", "fitness", "final_return",
    "seeds", "steps", "wall_s", "worker", "error")

# `running` (an addition to interfaces.md): a genome with candidate trials still out.
STATUSES = ("trained", "rejected", "failed", "duplicate", "running")


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
    kind: str           # "candidate" | "elite_reeval"


@dataclasses.dataclass(frozen=True)
class SeedResult:
    fitness: float | None   # None = this seed failed
    final_return: float | None = None
    error: str | None = None
    wall_s: float | None = None
    worker: str | None = None
    steps: int | None = None


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def make_result(fitness, final_return=None, error=None, wall_s=None, worker=None,
                steps=None) -> SeedResult:
    """Normalise what tell() received: a missing or non-finite fitness is a failed seed
    (JSON has no NaN, and a NaN must not win or lose a ranking silently)."""
    fit = _finite(fitness)
    if fit is None and error is None:
        error = "no fitness reported" if fitness is None else f"non-finite fitness {fitness}"
    return SeedResult(fit if error is None else None, _finite(final_return), error,
                      _finite(wall_s), worker, None if steps is None else int(steps))


@dataclasses.dataclass
class GenomeRecord:
    """A genome that got training (counted against the budget), with its seeds' results."""

    candidate: Candidate
    birth: int                                   # 0-based order among trained genomes
    seeds: dict[int, str]                        # seed -> trial kind, in issue order
    results: dict[int, SeedResult] = dataclasses.field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every candidate-kind seed told (elite re-runs do not hold a genome back)."""
        return all(s in self.results for s, kind in self.seeds.items() if kind == "candidate")

    @property
    def fitness(self) -> float | None:
        """Mean over the seeds that finished; None while none has, or if all failed."""
        ok = [r.fitness for r in self.results.values() if r.fitness is not None]
        return sum(ok) / len(ok) if ok else None

    @property
    def rank_key(self) -> float:
        fit = self.fitness
        return -math.inf if fit is None else fit

    @property
    def status(self) -> str:
        if not self.complete:
            return "running"
        return "trained" if self.fitness is not None else "failed"

    def row_fields(self) -> dict[str, Any]:
        told = [self.results[s] for s in self.seeds if s in self.results]
        returns = [r.final_return for r in told if r.fitness is not None and r.final_return is not None]
        errors = [f"seed {s}: {self.results[s].error}" for s in self.seeds
                  if s in self.results and self.results[s].error]
        workers = list(dict.fromkeys(r.worker for r in told if r.worker))
        walls = [r.wall_s for r in told if r.wall_s is not None]
        steps = [r.steps for r in told if r.steps is not None]
        return {"fitness": self.fitness,
                "final_return": sum(returns) / len(returns) if returns else None,
                "seeds": ";".join(str(s) for s in self.seeds),
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
