"""A job is one training run (a resolved TrainConfig with its seed) that a Ray Tune trial
executes; its :class:`Outcome` is what comes back to the driver.

Everything a run produces comes back in the trial's result: the curve and scores, and with
``keep_files`` every file of its run folder (config.json, meta.json, eval.csv, train.csv,
result.json, ...), base64 in one JSON string, for the driver to write. So a cluster needs
no shared disk: a worker writes only to a temporary folder of its own.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rl.config import TrainConfig

TrainFn = Callable[..., Any]   # rl.train.train's signature; tests pass fakes
MAX_FILE_BYTES = 64 * 2**20    # what one trial ships back at most; beyond, only .csv/.json files


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run: ``key`` is unique in its run folder."""

    key: str
    config: TrainConfig          # resolved, seed and genome set
    keep_files: bool = False     # ship the run's own folder back (evaluations), or only scores
    rungs: tuple[int, ...] = ()  # env steps where the trial reports its AULC so far (a
                                 # scheduler may stop it there; search/runs/tuner.py)
    members: tuple["Job", ...] = ()  # a cohort: these jobs (seeds of ``config``) as one batched
                                     # model in one trial (search/runs/cohorts.py)
    together: int = 1                # jobs in this job's trial (a cohort's size; set by it):
                                     # each takes 1/together of a slot (the ETA's share)
    trial: str = ""                  # the key of the trial it trains in (set by a cohort)

    def __post_init__(self) -> None:
        n = len(self.members)
        if any(m.together != n or m.trial != self.key for m in self.members):
            object.__setattr__(self, "members", tuple(
                dataclasses.replace(m, together=n, trial=self.key) for m in self.members))
        if not self.trial:
            object.__setattr__(self, "trial", self.key)

    def params(self) -> dict[str, Any]:
        """What the Tune trial receives (JSON-safe)."""
        params = {"key": self.key, "train": self.config.to_dict(), "keep_files": self.keep_files,
                  "rungs": list(self.rungs)}
        if self.members:
            params["members"] = [m.params() for m in self.members]
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Job":
        return cls(params["key"], TrainConfig.from_dict(params["train"]), bool(params["keep_files"]),
                   tuple(int(r) for r in params.get("rungs", ())),
                   tuple(cls.from_params(m) for m in params.get("members", ())))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one job produced, as the driver records it. ``error``: the trial crashed on
    every attempt (no scores); ``failed``: the run ended early by itself (diverged)."""

    approx_aulc: float | None = None
    final_return: float | None = None
    curve: tuple[tuple[int, float], ...] = ()
    failed: str | None = None
    error: str | None = None
    wall_s: float | None = None           # the whole trial, measured in the worker
    train_s: float | None = None          # TrainResult.train_s
    worker: str | None = None             # "<Ray node id>:<pid>" of the process that trained it
    steps: int | None = None              # environment steps trained
    attempts: int = 1
    files: Mapping[str, bytes] = dataclasses.field(default_factory=dict)
    dropped: tuple[str, ...] = ()         # files too large to ship back
    final: bool = True                    # False: a report at a rung (the run went on or was stopped)
    stopped: bool = False                 # stopped at a rung by the scheduler (``steps`` = the rung)

    @property
    def fitness(self) -> float | None:
        """The search's score: the approximate AULC, unless the run failed."""
        return None if self.failed or self.error else self.approx_aulc

    @property
    def problem(self) -> str | None:
        return self.error or self.failed

    @classmethod
    def from_metrics(cls, m: Mapping[str, Any], attempts: int = 1) -> "Outcome":
        """From the dict the trial reported (see :func:`report_metrics`)."""
        failed = m.get("failed") or None
        aulc = _float(m.get("approx_aulc"))
        if aulc is None and failed is None:
            failed = f"no finite AULC reported ({m.get('approx_aulc')!r})"
        files = {name: base64.b64decode(data) for name, data in json.loads(m.get("files") or "{}").items()}
        return cls(approx_aulc=aulc, final_return=_float(m.get("final_return")),
                   curve=tuple((int(s), float(r)) for s, r in json.loads(m.get("curve") or "[]")),
                   failed=failed, wall_s=_float(m.get("wall_s")), train_s=_float(m.get("train_s")),
                   worker=m.get("worker"), steps=_int(m.get("steps")), attempts=attempts,
                   files=files, dropped=tuple(json.loads(m.get("dropped") or "[]")),
                   final=bool(m.get("final", True)))


def _float(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _int(x: Any) -> int | None:
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- in the worker
def worker_name() -> str:
    """The Ray node id and pid of this process (host names cannot tell two nodes of one
    machine apart); the pid alone outside Ray."""
    try:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # no runtime context: not in a Ray process
        node = None
    return f"{node or 'local'}:{os.getpid()}"


def short_worker(worker: str | None) -> str:
    """``<node id>:<pid>`` with the node id cut to 8 hex digits, for the display."""
    node, _, pid = (worker or "?").rpartition(":")
    return f"{node[:8]}:{pid}" if node else (worker or "?")


def pack_files(folder: Path, limit: int = MAX_FILE_BYTES) -> tuple[dict[str, str], list[str]]:
    """Every file under ``folder`` (relative POSIX path -> base64); over ``limit`` bytes in
    all, the .csv/.json files only, and the names of the others."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    if sum(p.stat().st_size for p in paths) > limit:
        dropped = [p for p in paths if p.suffix not in (".csv", ".json")]
        paths = [p for p in paths if p not in dropped]
    else:
        dropped = []
    packed = {p.relative_to(folder).as_posix(): base64.b64encode(p.read_bytes()).decode()
              for p in paths}
    return packed, [p.relative_to(folder).as_posix() for p in dropped]


def report_metrics(result: Any, started: float, files: dict[str, str] | None = None,
                   dropped: list[str] | None = None) -> dict[str, Any]:
    """The metrics a trial reports to Tune at its end: flat and JSON-friendly (curve and
    files as strings, since Tune flattens nested dicts)."""
    curve = [list(p) for p in result.curve]
    return {"approx_aulc": float(result.approx_aulc), "final_return": float(result.final_return),
            "failed": result.failed or "", "curve": json.dumps(curve),
            "train_s": float(result.train_s), "wall_s": time.time() - started,
            "worker": worker_name(),
            "steps": int(getattr(result, "env_steps", 0) or (curve[-1][0] if curve else 0)),
            "files": json.dumps(files or {}), "dropped": json.dumps(dropped or []), "final": True}


def rung_metrics(curve: Sequence[Sequence[float]], started: float) -> dict[str, Any]:
    """What a trial reports at a rung: its curve so far and the approximate AULC of it (the
    mean evaluation return over its checkpoints so far, SPEC section 4)."""
    returns = [float(r) for _, r in curve]
    return {"approx_aulc": sum(returns) / len(returns), "final_return": returns[-1],
            "failed": "", "curve": json.dumps([list(p) for p in curve]), "train_s": None,
            "wall_s": time.time() - started, "worker": worker_name(),
            "steps": int(curve[-1][0]), "files": "{}", "dropped": "[]", "final": False}


def execute(params: Mapping[str, Any], *, threads: int, use_gpu: bool, train_fn: TrainFn | None,
            report: Callable[[dict], None]) -> None:
    """The body of one trial, in a Ray worker: train the job, ``report`` its metrics."""
    started = time.time()
    job = Job.from_params(params)
    if train_fn is None and not job.members:
        from rl.train import train as train_fn
    config = job.config
    if not use_gpu and config.device == "auto":
        config = config.replace(device="cpu")  # Ray gave this trial no GPU: do not take one
    if job.members:
        report(_train_cohort(job, config, threads, train_fn, started))
        return
    options: dict[str, Any] = {"threads": threads, "seed": config.seed}
    if job.rungs:
        def at_checkpoint(curve: Sequence[Sequence[float]]) -> None:
            if curve and curve[-1][0] in job.rungs:
                report(rung_metrics(curve, started))  # a stopped trial ends in here

        options["on_checkpoint"] = at_checkpoint
    if not job.keep_files:
        result = train_fn(config, None, **options)
        report(report_metrics(result, started))
        return
    with tempfile.TemporaryDirectory(prefix="a2ls-run-") as tmp:
        result = train_fn(config, Path(tmp) / "run", **options)
        folder = Path(tmp) / "run"
        files, dropped = pack_files(folder) if folder.is_dir() else ({}, [])
    report(report_metrics(result, started, files, dropped))


def _train_cohort(job: Job, config: TrainConfig, threads: int, train_fn: TrainFn | None,
                  started: float) -> dict[str, Any]:
    """A cohort trial's body: its members' seeds as one batched model (``rl.cohort``), or,
    with a stand-in ``train_fn`` (tests), one after another; each member's metrics (and
    files) as a lone trial reports them, in ``members`` (a JSON string, as Tune flattens
    nested dicts)."""
    seeds = [m.config.seed for m in job.members]
    with tempfile.TemporaryDirectory(prefix="a2ls-cohort-") as tmp:
        dirs = [Path(tmp) / f"member{i}" for i in range(len(seeds))] if job.keep_files else None
        if train_fn is None:
            from rl.cohort import train_cohort

            results = train_cohort(config, seeds, dirs, threads=threads)
        else:
            results = [train_fn(config.replace(seed=seed), dirs[i] if dirs else None,
                                threads=threads, seed=seed) for i, seed in enumerate(seeds)]
        members = []
        for i, result in enumerate(results):
            folder = dirs[i] if dirs else None
            files, dropped = pack_files(folder) if folder is not None and folder.is_dir() else ({}, [])
            members.append(report_metrics(result, started, files, dropped))
    scores = [m["approx_aulc"] for m in members if math.isfinite(m["approx_aulc"])]
    return {"approx_aulc": sum(scores) / len(scores) if scores else float("nan"), "final": True,
            "steps": max(m["steps"] for m in members), "worker": worker_name(),
            "members": json.dumps(members)}
