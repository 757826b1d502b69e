"""The run folder ``results/NAME``: everything a search is, on disk, written atomically.

Layout:
  config.json         the resolved search config (preset, fitness, search, train, dispatch)
  meta.json           host, git commit, versions, one entry per driver session
  engine.json         the engine's whole state, rewritten after every result (resume reads it)
  population.csv      one row per candidate (interfaces.md columns); also population.parquet
  curves.csv          id, seed, env_step, return for every finished training run
  events.log          the progress display's events, one line each
  tune/               Ray Tune's own experiment folders (never read back)

Every file is written to a temp file, fsynced, then ``os.replace``d (and the directory
fsynced), so a driver killed at any instant (SIGKILL, power loss) leaves the previous or
the new version of each file, never half of one. ``engine.json`` is the source of truth
for resume; the CSV/parquet files are views of it that are rewritten on resume.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rl.run_dir import atomic_write_bytes, atomic_write_json, atomic_write_text

FORMAT = "a2ls-search-run/1"
# Parts of config.json that define a search: another value is another run. Dispatch
# settings (address, CPUs per candidate, ...) may change between sessions of one run.
DEFINING = ("fitness", "search", "train", "verdict")
CURVE_COLUMNS = ("id", "seed", "env_step", "return")


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; one line for the user."""


# Atomic writes live in rl.run_dir (one implementation for train, search, evaluate).


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


# ---------------------------------------------------------------- the folder
class RunFolder:
    """One search run on disk. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | os.PathLike, config: dict[str, Any]) -> None:
        self.path = Path(path).resolve()
        self.config = config
        self._curves: dict[tuple[str, int], list[tuple[int, float]]] = {}
        self._load_curves()

    # ------------------------------------------------------------ create/open
    @staticmethod
    def check_new(path: str | os.PathLike, config: dict[str, Any]) -> None:
        """Raise RunFolderError unless ``path`` may hold a new run with ``config``.

        Reads only; nothing is written, so a refused ``--run`` overwrites nothing."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"--run: {path} exists and is not a folder")
        if (path / "config.json").exists():
            old = _read_json(path / "config.json", "--run")
            changed = [k for k in DEFINING if old.get(k) != config.get(k)]
            if not changed:
                raise RunFolderError(f"--run: {path} already holds this search; continue it "
                                     f"with: python search.py --resume {path}")
            detail = ", ".join(_differences(old, config)[:6])
            raise RunFolderError(f"--run: {path} holds a run with another config ({detail}); "
                                 f"choose another --run folder")
        if path.is_dir() and any(path.iterdir()):
            raise RunFolderError(f"--run: {path} exists, is not empty and is not a search run")

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict[str, Any],
               engine_state: dict[str, Any], rows: list[dict[str, Any]],
               columns: Sequence[str], session: dict[str, Any] | None = None) -> "RunFolder":
        """A new run, written before anything trains. config.json comes last: it is what
        makes a folder a run, and a run always has an engine state to resume from."""
        cls.check_new(path, config)
        folder = cls(path, {**config, "format": FORMAT})
        folder.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder.path / "meta.json", {
            "git_commit": _git_commit(), "versions": _versions(), "sessions": []})
        folder.begin_session(session)
        folder.save(engine_state, rows, columns)
        atomic_write_json(folder.path / "config.json", folder.config)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunFolder":
        """An existing run, for ``--resume``; reads only. RunFolderError if it is not one."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise RunFolderError(f"--resume: {path} is not a search run (no config.json)")
        config = _read_json(path / "config.json", "--resume")
        if config.get("format") != FORMAT:
            raise RunFolderError(f"--resume: {path}/config.json is not a search run config "
                                 f"(format {config.get('format')!r})")
        if not (path / "engine.json").is_file():
            raise RunFolderError(f"--resume: {path} has no engine.json (the search never started)")
        _read_json(path / "engine.json", "--resume")
        return cls(path, config)

    def begin_session(self, details: dict[str, Any] | None = None) -> None:
        """Note one driver session (new run or resume) in meta.json."""
        meta_path = self.path / "meta.json"
        meta = _read_json(meta_path, "--resume") if meta_path.exists() else {}
        meta.setdefault("sessions", []).append({
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv,
            "host": socket.gethostname(), "pid": os.getpid(), **(details or {})})
        atomic_write_json(meta_path, meta)

    # ------------------------------------------------------------ state
    def engine_state(self) -> dict[str, Any]:
        return _read_json(self.path / "engine.json", "--resume")

    def has_engine_state(self) -> bool:
        return (self.path / "engine.json").is_file()

    def save(self, engine_state: dict[str, Any], rows: list[dict[str, Any]],
             columns: Sequence[str]) -> None:
        """Engine state first (the truth), then the population views of it."""
        atomic_write_json(self.path / "engine.json", engine_state)
        self.write_population(rows, columns)

    def write_population(self, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
        atomic_write_text(self.path / "population.csv", csv_text(rows, columns))
        self._write_parquet(rows, columns)

    def _write_parquet(self, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = {c: [_parquet_cell(r.get(c)) for r in rows] for c in columns}
        table = pa.table({c: pa.array(v, type=_arrow_type(c, v)) for c, v in data.items()})
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        atomic_write_bytes(self.path / "population.parquet", buf.getvalue().to_pybytes())

    # ------------------------------------------------------------ curves
    def put_curve(self, genome_id: str, seed: int, curve: Iterable[Sequence[float]]) -> None:
        """Record one run's learning curve (a rerun of the same id and seed replaces it)."""
        self._curves[(genome_id, int(seed))] = [(int(s), float(r)) for s, r in curve]
        rows = [{"id": i, "seed": s, "env_step": step, "return": ret}
                for (i, s), points in self._curves.items() for step, ret in points]
        atomic_write_text(self.path / "curves.csv", csv_text(rows, CURVE_COLUMNS))

    def _load_curves(self) -> None:
        path = self.path / "curves.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["id"], int(row["seed"]))
                self._curves.setdefault(key, []).append((int(row["env_step"]), float(row["return"])))

    # ------------------------------------------------------------ events
    def log_event(self, line: str) -> None:
        """Append one line to events.log (a log, not a record: resume never reads it)."""
        with open(self.path / "events.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    @property
    def tune_dir(self) -> Path:
        return self.path / "tune"


# ---------------------------------------------------------------- helpers
def _read_json(path: Path, flag: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{flag}: cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{flag}: {path} does not hold a JSON object")
    return data


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ, e.g. ``search.budget 6 -> 8``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            if prefix == "" and key not in DEFINING:
                continue
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]
    return []


def _parquet_cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _arrow_type(column: str, values: list[Any]):
    """Stable column types even when every value is still None (e.g. no failures yet)."""
    import pyarrow as pa

    if column in ("fitness", "fitness_se", "final_return", "wall_s"):
        return pa.float64()
    if column in ("auxi_pred_horizon", "generation", "steps", "stopped_at"):
        return pa.int64()
    if column == "penalize_negative":
        return pa.bool_()
    return pa.string()


def _git_commit() -> str | None:
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for name in ("ray", "torch", "dm_control", "mujoco", "numpy", "pandas"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
