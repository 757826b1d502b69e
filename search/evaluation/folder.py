"""An evaluation's run folder (``--run results/NAME``), the source of truth for ``--resume``:

- ``eval_config.json``: the command line, the plan (every run's resolved config), versions
  and git commit, written before the first run starts;
- ``runs/<key>/``: the training run's own folder (config.json, meta.json, eval.csv,
  train.csv, result.json), shipped back from the worker and written here by the driver;
- ``records/<key>.json``: one per finished run, written last (atomically), so a run is
  either recorded whole or not at all, and a resume trains exactly the unrecorded ones
  and those recorded as ``error``;
- ``tune/``: Ray Tune's own experiment folders (never read back);
- the report: curves.csv, summary.csv, comparison.csv, summary.md, plots/<task>.png.

Folders written before the layout change (the same files, no ``tune/``) resume as they are.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Sequence

from rl.config import TrainConfig
from rl.run_dir import atomic_write_bytes, atomic_write_json, git_commit, versions
from search.evaluation.losses import EvalError
from search.evaluation.plan import Plan, RunSpec

CONFIG_FILE = "eval_config.json"
RECORDS = "records"
RUNS = "runs"
FINAL = ("done", "diverged")   # recorded statuses a resume keeps; "error" is run again


def write_config(run_dir: Path, plan: Plan, argv: Sequence[str], dispatch: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, {
        "argv": list(argv), "plan": plan.to_dict(), "dispatch": dispatch,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "git_commit": git_commit(), "versions": versions()})


def read_config(run_dir: Path, flag: str = "--resume") -> dict[str, Any]:
    """``eval_config.json``; EvalError (one line) when it is missing or unreadable."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EvalError(f"{flag}: {run_dir} holds no evaluation ({CONFIG_FILE})") from None
    except (OSError, ValueError) as err:
        raise EvalError(f"{flag}: cannot read {path} ({type(err).__name__})") from None
    plan = data.get("plan") if isinstance(data, dict) else None
    if not isinstance(plan, dict) or "runs" not in plan or "argv" not in data:
        raise EvalError(f"{flag}: {path} is not an evaluation config (no plan or argv)")
    return data


def _same_config(old: dict, new: dict) -> str | None:
    """The first flag whose value differs; a field the stored config lacks (added to
    TrainConfig since) counts as its default."""
    defaults = TrainConfig().to_dict()
    for key, value in new.items():
        if old.get(key, defaults.get(key)) != value:
            return key
    return None


def check_run_folder(plan: Plan, run_dir: Path, resume: bool) -> None:
    """A new evaluation needs an empty folder; ``--resume`` needs the same plan as stored."""
    stored = run_dir / CONFIG_FILE
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            hint = "add --resume to continue its evaluation" if stored.is_file() else \
                "choose an empty or new folder"
            raise EvalError(f"--run: {run_dir} is not empty; {hint}")
        return
    if not stored.is_file():
        if run_dir.exists() and any(run_dir.iterdir()):
            raise EvalError(f"--resume: {run_dir} holds no evaluation ({CONFIG_FILE}) but other files")
        return  # nothing to resume: a fresh start
    old = read_config(run_dir)["plan"]["runs"]
    new = json.loads(json.dumps([r.to_dict() for r in plan.runs], default=str))
    old_keys, new_keys = [r["key"] for r in old], [r["key"] for r in new]
    why = None
    if old_keys != new_keys:
        why = (f"{len(old_keys)} runs stored, {len(new_keys)} asked" if len(old_keys) != len(new_keys)
               else f"run {next(a for a, b in zip(old_keys, new_keys) if a != b)} differs")
    else:
        for o, n in zip(old, new):
            flag = _same_config(o["config"], n["config"])
            if flag is not None:
                why = f"--{flag} differs in run {n['key']}"
                break
    if why:
        raise EvalError(f"--resume: {run_dir} holds a different evaluation ({why}); "
                        f"resume it with only --resume --run {run_dir}")


# ---------------------------------------------------------------- records
def load_records(run_dir: str | os.PathLike) -> dict[str, dict]:
    folder = Path(run_dir) / RECORDS
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            out[record["key"]] = record
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise EvalError(f"{path}: not a run record ({type(err).__name__})") from None
    return out


def write_record(run_dir: str | os.PathLike, record: dict) -> None:
    folder = Path(run_dir) / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / f"{record['key']}.json", record)


def make_record(spec: RunSpec, outcome: Any) -> dict:
    """``done``; ``diverged`` (the run ended itself early: a result, not retried); ``error``
    (every attempt raised or lost its worker; run again by ``--resume``). ``outcome`` is a
    :class:`search.runs.jobs.Outcome`."""
    status = "error" if outcome.error else ("diverged" if outcome.failed else "done")
    genome = spec.config.genome if spec.agent == "auxi_sac" else None
    nan = float("nan")
    return {"key": spec.key, "loss": spec.loss, "agent": spec.agent, "task": spec.task,
            "seed": spec.seed, "genome": str(genome) if genome else None,
            "encoder_type": spec.config.encoder_type, "status": status,
            "curve": [list(p) for p in outcome.curve],
            "approx_aulc": nan if outcome.approx_aulc is None else outcome.approx_aulc,
            "final_return": nan if outcome.final_return is None else outcome.final_return,
            "failed": outcome.error or outcome.failed, "wall_s": outcome.wall_s,
            "train_s": outcome.train_s, "worker": outcome.worker, "steps": outcome.steps,
            "attempts": outcome.attempts, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_run_files(run_dir: str | os.PathLike, key: str, files: dict[str, bytes]) -> Path:
    """The run's own folder, ``runs/<key>/``, from the files its trial shipped back: built
    beside it, then swapped in (what a killed earlier attempt left there is replaced)."""
    runs = Path(run_dir) / RUNS
    final, partial = runs / key, runs / f".{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for name, data in files.items():
        path = partial / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ValueError(f"run file {name!r}: not a path inside the run folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    partial.mkdir(parents=True, exist_ok=True)
    result = partial / "result.json"
    if result.is_file():  # it names the worker's temporary folder; the run lives here now
        data = json.loads(result.read_text())
        data["run_dir"] = str(final)
        atomic_write_json(result, data)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return final

