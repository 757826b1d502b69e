"""What an evaluation evaluates: named losses, genomes, the best of a search run folder, and
the baselines (plain SAC on pixels or states, CURL), each a :class:`Loss`."""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path
from typing import Iterable

from spaces import NAMED_LOSSES, Genome, GenomeError, build_error, named

# name -> (label, agent, encoder override): SAC and CURL with the evaluation's encoder, and
# plain state SAC (the released --encoder_type identity: the state straight into actor and
# critic), the baseline a vector search is judged against.
BASELINES = {"sac": ("SAC", "pixel_sac", None), "curl": ("CURL", "curl_sac", None),
             "state-sac": ("SAC-state", "pixel_sac", "identity")}


class EvalError(ValueError):
    """Bad user input; the message is one line naming the flag."""


@dataclasses.dataclass(frozen=True)
class Loss:
    """One thing to evaluate: an auxiliary loss (auxi_sac + genome) or a baseline agent."""

    label: str                 # "a2-winner", "top1-<id>", "genome-<id>", "SAC", "CURL", "SAC-state"
    agent: str                 # auxi_sac | pixel_sac | curl_sac
    genome: Genome | None      # None for baselines
    origin: str                # where it came from, for the report
    encoder: str | None = None # replaces the evaluation's --encoder_type (SAC-state: identity)

    @property
    def is_baseline(self) -> bool:
        return self.genome is None

    def to_dict(self) -> dict:
        out = {"label": self.label, "agent": self.agent, "origin": self.origin,
               "genome": str(self.genome) if self.genome else None}
        if self.encoder:
            out["encoder"] = self.encoder
        return out


def _name_of(genome: Genome) -> str | None:
    return next((n for n, g in NAMED_LOSSES.items() if str(g) == str(genome)), None)


def genome_loss(genome: Genome, origin: str = "genome", flag: str = "--genome") -> Loss:
    problem = build_error(genome)
    if problem:
        raise EvalError(f"{flag}: {genome} has an {problem}; it cannot be built")
    name = _name_of(genome)
    return Loss(name or f"genome-{genome.id}", "auxi_sac", genome, origin)


def parse_genome(text: str) -> Loss:
    try:
        return genome_loss(Genome.parse(text))
    except GenomeError as e:
        raise EvalError(f"--genome: {e}") from None


def named_losses(names: Iterable[str]) -> list[Loss]:
    out = []
    for name in names:
        try:
            genome = named(name)
        except GenomeError as e:
            raise EvalError(f"--loss: {e}") from None
        out.append(Loss(_name_of(genome) or name, "auxi_sac", genome, "named"))
    return out


def top_losses(search_dir: str | os.PathLike, top: int) -> list[Loss]:
    """The ``top`` trained genomes of a search run folder by fitness (population.csv)."""
    folder = Path(search_dir)
    table = folder / "population.csv"
    if top < 1:
        raise EvalError(f"--top: must be >= 1, got {top}")
    if not table.is_file():
        what = "does not exist" if not folder.exists() else "holds no population.csv"
        raise EvalError(f"--from: {folder} {what} (expected a search run folder)")
    with open(table, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("status") == "trained"]
    scored = []
    for row in rows:
        try:
            fitness = float(row["fitness"])
            genome = Genome.parse(row["genome"])
        except (KeyError, ValueError) as e:  # GenomeError is a ValueError
            raise EvalError(f"--from: {table}: row {row.get('id', '?')} is unreadable ({e})") from None
        if math.isfinite(fitness):
            scored.append((-fitness, genome.id, genome, fitness))
    if not scored:
        raise EvalError(f"--from: {table} has no trained candidate with a fitness")
    scored.sort(key=lambda s: (s[0], s[1]))  # best first; ties broken by id, reproducibly
    out = []
    for rank, (_, gid, genome, fitness) in enumerate(scored[:top], start=1):
        name = _name_of(genome)
        origin = f"{folder} rank {rank}, fitness {fitness:.1f}" + (f" (= {name})" if name else "")
        out.append(Loss(f"top{rank}-{gid}", "auxi_sac", genome, origin))
    return out


def baseline_losses(spec: str) -> list[Loss]:
    """``"sac,curl"`` (default), ``"sac"``, ``"state-sac"``, ``"none"``."""
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise EvalError(f"--baselines: unknown baseline {(', '.join(unknown) or spec)!r} "
                        f"(expected a comma list of {', '.join(BASELINES)}, or none)")
    return [Loss(BASELINES[n][0], BASELINES[n][1], None, "baseline", BASELINES[n][2])
            for n in dict.fromkeys(names)]
