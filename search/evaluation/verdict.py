"""The held-out verdict of a search (SPEC section 4b): when the budget is spent, the top N
genomes by search fitness are named, in ``verdict/names.json``, before any held-out result
exists; then they are re-trained at the top-rung length beside the references (plain SAC,
plain state SAC, the paper's A2-winner) on fresh seeds that no selection used. The runs
form an evaluation run folder, ``verdict/`` (search/evaluation/folder.py), so they resume
and report as any evaluation does.
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any, Iterable, Sequence

from rl.config import TrainConfig
from rl.run_dir import atomic_write_json
from search.evaluation.losses import BASELINES, Loss, genome_loss, named_losses
from search.evaluation.plan import Plan, build_plan
from spaces import Genome

VERDICT_DIR = "verdict"
NAMES_FILE = "names.json"
REFERENCES = ("sac", "state-sac", "a2-winner")   # baselines by BASELINES name, or named losses
SEED_RANGE = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class VerdictConfig:
    top: int = 0                                  # genomes named (0: no verdict)
    seeds: int = 5                                # fresh seeds per loss
    references: tuple[str, ...] = REFERENCES

    def __post_init__(self) -> None:
        for name, low in (("top", 0), ("seeds", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"verdict_{name}: expected an integer >= {low}, got {value!r}")
        object.__setattr__(self, "references", tuple(self.references))
        for ref in self.references:
            if ref not in BASELINES:
                named_losses([ref])  # EvalError (a ValueError) naming --loss for an unknown name

    @property
    def enabled(self) -> bool:
        return self.top > 0

    @property
    def runs(self) -> int:
        """Runs of the verdict: the named genomes and the references, on every seed."""
        return (self.top + len(self.references)) * self.seeds if self.enabled else 0

    def to_dict(self) -> dict[str, Any]:
        return {"top": self.top, "seeds": self.seeds, "references": list(self.references)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "VerdictConfig":
        return cls(**(data or {}))  # configs written before the verdict have none: top 0


@dataclasses.dataclass(frozen=True)
class Named:
    """What ``names.json`` holds: fixed before the first verdict run."""

    winners: tuple[dict[str, Any], ...]   # id, genome, fitness, fitness_se, seeds (search seeds)
    seeds: tuple[int, ...]                # the held-out seeds

    def to_dict(self) -> dict[str, Any]:
        return {"winners": list(self.winners), "seeds": list(self.seeds)}


def name_winners(records: Iterable[Any], top: int, n_seeds: int, search_seed: int) -> Named:
    """The top ``top`` genomes by search rank (furthest rung, then fitness, then birth), and
    ``n_seeds`` seeds drawn apart from every seed the search used. ``records`` are the
    engine's GenomeRecords."""
    ranked = sorted((r for r in records if r.fitness is not None and r.complete),
                    key=lambda r: (*r.order, r.birth))
    used = {seed for r in records for seed in r.seeds}
    rng = random.Random(f"verdict-{search_seed}")
    seeds: list[int] = []
    while len(seeds) < n_seeds:
        seed = rng.randint(1, SEED_RANGE)
        if seed not in used and seed not in seeds:
            seeds.append(seed)
    winners = tuple({"id": r.candidate.id, "genome": str(r.candidate.genome),
                     "fitness": r.fitness, "fitness_se": r.fitness_se,
                     "search_seeds": sorted(r.seeds)} for r in ranked[:top])
    return Named(winners, tuple(seeds))


def write_names(run: Path, named: Named) -> Path:
    folder = Path(run) / VERDICT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / NAMES_FILE, named.to_dict())
    return folder / NAMES_FILE


def read_names(run: Path) -> Named | None:
    path = Path(run) / VERDICT_DIR / NAMES_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Named(tuple(data["winners"]), tuple(int(s) for s in data["seeds"]))


def verdict_losses(named: Named, references: Sequence[str]) -> list[Loss]:
    losses = []
    for rank, winner in enumerate(named.winners, start=1):
        loss = genome_loss(Genome.parse(winner["genome"]), f"search rank {rank}, fitness "
                           f"{winner['fitness']:.1f}", "--verdict")
        losses.append(dataclasses.replace(loss, label=f"winner{rank}-{winner['id']}"))
    for ref in references:
        if ref in BASELINES:
            label, agent, encoder = BASELINES[ref]
            losses.append(Loss(label, agent, None, "reference", encoder))
        else:
            losses += [dataclasses.replace(loss, origin="reference") for loss in named_losses([ref])]
    return losses


def verdict_plan(named: Named, base: TrainConfig, references: Sequence[str]) -> Plan:
    """Every named winner and reference on the search's task, at its full training length,
    on the held-out seeds (the plan an evaluation folder stores)."""
    return build_plan(verdict_losses(named, references), [base.task], named.seeds, base)
