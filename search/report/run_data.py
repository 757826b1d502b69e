"""Reading a search run folder back for reports (the format: notes/interfaces.md).

Everything is read as text first and converted column by column: pandas would otherwise
read the A2LS masks ``"0111"`` as the integer 111 and an all-digit genome id as a number.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spaces import Genome, GenomeError

REQUIRED = ("id", "genome", "status", "fitness", "generation", "parents")
NUMERIC = ("fitness", "fitness_se", "final_return", "generation", "steps", "stopped_at", "wall_s")
CURVE_COLUMNS = ("id", "seed", "env_step", "return")
# When one id has several rows (a duplicate re-proposed later), the row that was
# trained speaks for it.
_STATUS_RANK = {"trained": 0, "stopped": 1, "failed": 2, "rejected": 3, "duplicate": 4}


class ReportError(ValueError):
    """A run folder that cannot be reported on; the one-line message names the path."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One search run as the report sees it."""

    path: Path
    population: pd.DataFrame       # every row of population.csv, typed
    curves: pd.DataFrame | None    # curves.csv, or None
    config: dict[str, Any]         # config.json, or {}
    task: str | None               # e.g. "cheetah_run", from config.json
    from_pixels: bool | None       # None when the config does not say
    planted: bool                  # fitness is a planted similarity, not an RL return

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def trained(self) -> pd.DataFrame:
        """Trained candidates with a finite fitness, one row per genome id, best first."""
        df = self.population
        df = df[(df["status"] == "trained") & np.isfinite(df["fitness"])]
        df = df.sort_values(["fitness", "generation"], ascending=[False, True], kind="stable")
        return df.drop_duplicates("id").reset_index(drop=True)

    @property
    def ranked(self) -> pd.DataFrame:
        """Trained and stopped candidates as the search ranks them: those that reached the
        top first, then by the rung they were stopped at (furthest first), then by the
        fitness there (the engine's GenomeRecord.order)."""
        df = self.population
        df = df[df["status"].isin(("trained", "stopped")) & np.isfinite(df["fitness"])]
        reached = df["stopped_at"].where(df["status"] == "stopped", np.inf)
        df = df.assign(_reached=reached.fillna(np.inf))
        df = df.sort_values(["_reached", "fitness", "generation"], ascending=[False, False, True],
                            kind="stable")
        return df.drop_duplicates("id").drop(columns="_reached").reset_index(drop=True)

    @property
    def rungs(self) -> tuple[int, ...]:
        return tuple(int(r) for r in (self.config.get("search", {}) or {}).get("rungs", ()) or ())

    @property
    def top_steps(self) -> int | None:
        steps = (self.config.get("train", {}) or {}).get("num_train_steps")
        return int(steps) if steps else None

    def by_id(self) -> dict[str, dict]:
        """id -> the row that speaks for it (trained before failed, rejected, duplicate)."""
        df = self.population.assign(_rank=self.population["status"].map(_STATUS_RANK).fillna(9))
        df = df.sort_values(["_rank", "generation"], kind="stable").drop_duplicates("id")
        return {row["id"]: row for row in df.drop(columns="_rank").to_dict("records")}


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path}: empty file (expected a CSV header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ReportError(f"{path}: cannot read as CSV ({first})") from None


def _missing(df: pd.DataFrame, need, path: Path) -> None:
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")


def _population(path: Path) -> pd.DataFrame:
    df = _read_csv(path)
    _missing(df, REQUIRED, path)
    for col in ("operator", "seeds", "reject_reason", "error", "worker"):
        if col not in df.columns:
            df[col] = ""
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else math.nan
    df["fitness"] = df["fitness"].astype(float)
    df["status"] = df["status"].str.strip().str.lower()
    genomes = []
    for i, text in enumerate(df["genome"]):
        try:
            genomes.append(Genome.parse(text))
        except GenomeError as e:
            raise ReportError(f"{path}: row {i + 2}: {e}") from None
    df["genome_obj"] = genomes
    return df


def _curves(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    df = _read_csv(path)
    _missing(df, CURVE_COLUMNS, path)
    for col in ("env_step", "return"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df.dropna(subset=["env_step", "return"])


def _config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def find_key(data: Any, names: tuple[str, ...]) -> Any:
    """The first value under any of ``names``, searched depth-first through nested dicts
    (the search config nests the training config; we do not depend on where)."""
    if isinstance(data, dict):
        for name in names:
            if name in data and not isinstance(data[name], (dict, list)):
                return data[name]
        for value in data.values():
            found = find_key(value, names)
            if found is not None:
                return found
    return None


def _task(config: dict) -> str | None:
    domain = find_key(config, ("domain_name", "task", "env"))
    if not domain:
        return None
    task_name = find_key(config, ("task_name",))
    return f"{domain}_{task_name}" if task_name else str(domain)


def _from_pixels(config: dict) -> bool | None:
    pixels = find_key(config, ("from_pixels",))
    if isinstance(pixels, bool):
        return pixels
    encoder = find_key(config, ("encoder_type",))
    return None if encoder is None else encoder == "pixel"


def _planted(config: dict, population: pd.DataFrame) -> bool:
    if find_key(config, ("planted", "planted_genome", "target_genome")):
        return True
    if str(find_key(config, ("fitness", "fitness_kind", "mode")) or "").startswith("planted"):
        return True
    # Without returns, fitness cannot be an RL score.
    trained = population[population["status"] == "trained"]
    return len(trained) > 0 and trained["final_return"].isna().all() and trained["fitness"].between(0, 1).all()


def load_run(run_dir: str | os.PathLike) -> Run:
    """Read ``run_dir`` (or the population.csv inside it). Raises ReportError."""
    path = Path(run_dir)
    if path.is_file() and path.name == "population.csv":
        path = path.parent
    population_csv = path / "population.csv"
    if not path.is_dir():
        raise ReportError(f"{path}: no such run folder")
    if not population_csv.is_file():
        raise ReportError(f"{path}: not a search run folder (no population.csv)")
    population = _population(population_csv)
    config = _config(path / "config.json")
    return Run(path=path, population=population, curves=_curves(path / "curves.csv"),
               config=config, task=_task(config), from_pixels=_from_pixels(config),
               planted=_planted(config, population))
