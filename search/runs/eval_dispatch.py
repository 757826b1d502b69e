"""Dispatch of an evaluation's runs as Ray tasks, and the records that make it resumable.

Each (loss, task, seed) run is one Ray task with ``cpus_per_run``/``gpus_per_run``. The
driver writes ``records/<key>.json`` atomically as each run returns, so a run is either
recorded whole or not at all, and ``--resume`` reruns exactly the unrecorded ones (and the
ones recorded as ``error``). A crash (an exception, a lost worker) is retried up to
``max_failures`` times; a diverged run is a result, recorded and not retried.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rl.config import TrainConfig
from rl.run_dir import atomic_write_json

if TYPE_CHECKING:
    from search.evaluation.plan import Plan, RunSpec

RECORDS = "records"


class DispatchError(ValueError):
    """The cluster cannot run what was asked (one line, naming the flag)."""


def load_records(run_dir: str | os.PathLike) -> dict[str, dict]:
    folder = Path(run_dir) / RECORDS
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        out[record["key"]] = record
    return out


def write_record(run_dir: str | os.PathLike, record: dict) -> None:
    folder = Path(run_dir) / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / f"{record['key']}.json", record)


def make_record(spec: RunSpec, result: dict | None, *, attempts: int, error: str | None) -> dict:
    """``done``; ``diverged`` (train returned ``failed``: a result, not retried); ``error``
    (every attempt raised or lost its worker; rerun by ``--resume``)."""
    result = result or {}
    status = "error" if error else ("diverged" if result.get("failed") else "done")
    genome = spec.config.genome if spec.agent == "auxi_sac" else None
    return {"key": spec.key, "loss": spec.loss, "agent": spec.agent, "task": spec.task,
            "seed": spec.seed, "genome": str(genome) if genome else None,
            "encoder_type": spec.config.encoder_type, "status": status,
            "curve": [list(p) for p in result.get("curve", ())],
            "approx_aulc": result.get("approx_aulc", math.nan),
            "final_return": result.get("final_return", math.nan),
            "failed": error or result.get("failed"), "wall_s": result.get("wall_s"),
            "train_s": result.get("train_s"), "worker": result.get("worker"),
            "attempts": attempts, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@dataclasses.dataclass(frozen=True)
class Dispatch:
    address: str | None = None     # None: an embedded local Ray instance
    num_cpus: int | None = None    # size of the embedded instance (default: this machine)
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_failures: int = 2          # retries of a run that raised or lost its worker
    progress: bool = True


def _execute(config: TrainConfig, run_dir: str, threads: int, use_gpu: bool,
             train_fn: Callable | None) -> dict:
    """Body of one Ray task: train, return a plain dict (never the agent)."""
    import shutil

    if train_fn is None:
        from rl.train import train as train_fn
    if not use_gpu and config.device == "auto":
        config = config.replace(device="cpu")  # Ray gave this run no GPU: do not take one
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # what a killed earlier attempt left; its record never came
    result = train_fn(config, run_dir, progress=False, threads=threads, seed=config.seed)
    out = {f: getattr(result, f) for f in ("curve", "approx_aulc", "final_return", "wall_s",
                                           "train_s", "failed")}
    out["curve"] = [list(p) for p in out["curve"]]
    out["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return out


class _Progress:
    """done/running/failed counts, elapsed and ETA on one stderr line (redrawn on a terminal,
    a line per finished run and per minute otherwise)."""

    def __init__(self, enabled: bool, total: int, already: int):
        self.enabled, self.total, self.already = enabled, total, already
        self.start = self.last = time.time()
        self.tty = sys.stderr.isatty()
        self.done = self.failed = self.retried = 0

    def show(self, running: int, force: bool = False) -> None:
        now = time.time()
        if not self.enabled or (not force and now - self.last < (1.0 if self.tty else 60.0)):
            return
        self.last = now
        finished_now = self.done + self.failed
        left = self.total - self.already - finished_now
        # the rate of this session (parallelism and overheads included)
        eta = _clock(left * (now - self.start) / finished_now) if finished_now and left else "-"
        line = (f"[evaluate] {self.already + finished_now}/{self.total} recorded "
                f"({self.already} before), {running} running, {self.failed} failed, "
                f"{self.retried} retried | elapsed {_clock(now - self.start)} | ETA {eta}")
        print(("\r" + line.ljust(100)) if self.tty else line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        print(("\n" if self.enabled and self.tty else "") + text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _slots(resources: dict, dispatch: Dispatch) -> int:
    """How many runs the cluster holds at once."""
    slots = int(resources.get("CPU", 0) // max(dispatch.cpus_per_run, 1e-9))
    if dispatch.gpus_per_run > 0:
        slots = min(slots, int(resources.get("GPU", 0) // dispatch.gpus_per_run))
    if slots < 1:
        raise DispatchError(
            f"--cpus_per_run/--gpus_per_run: the cluster ({resources.get('CPU', 0):.0f} CPUs, "
            f"{resources.get('GPU', 0):.0f} GPUs) cannot hold one run of {dispatch.cpus_per_run:g}"
            f" CPUs and {dispatch.gpus_per_run:g} GPUs")
    return slots


def run_plan(plan: Plan, run_dir: str | os.PathLike, dispatch: Dispatch, *,
             train_fn: Callable | None = None) -> dict[str, dict]:
    """Train every run of ``plan`` not yet recorded in ``run_dir``; returns all records.

    Runs are Ray tasks with ``cpus_per_run``/``gpus_per_run`` resources, at most as many in
    flight as the cluster has room for (so "running" is what runs, not what queues). A run
    that raises or loses its worker is retried up to ``max_failures`` times, then recorded
    as ``error``. ``train_fn`` replaces ``rl.train.train`` (tests).
    """
    import ray
    from search.runs.cluster import init_ray

    run_dir = Path(run_dir)
    records = load_records(run_dir)
    todo = [r for r in plan.runs if records.get(r.key, {}).get("status") not in ("done", "diverged")]
    if not todo:
        return records
    started_ray = not ray.is_initialized()
    print(init_ray(dispatch.address, dispatch.num_cpus), file=sys.stderr)
    inflight: dict = {}
    try:
        resources = ray.cluster_resources()
        slots = _slots(resources, dispatch)
        if resources.get("GPU", 0) and not dispatch.gpus_per_run:
            print("note: the cluster has GPUs but --gpus_per_run is 0: runs train on CPU",
                  file=sys.stderr)
        remote = ray.remote(_execute).options(
            num_cpus=dispatch.cpus_per_run, num_gpus=dispatch.gpus_per_run, max_retries=0)
        threads = max(1, int(dispatch.cpus_per_run))
        bar = _Progress(dispatch.progress, len(plan.runs), len(plan.runs) - len(todo))
        queue, attempts, changed = list(todo), {r.key: 0 for r in todo}, True
        while queue or inflight:
            while queue and len(inflight) < slots:
                spec = queue.pop(0)
                attempts[spec.key] += 1
                ref = remote.remote(spec.config, str(run_dir / "runs" / spec.key), threads,
                                    dispatch.gpus_per_run > 0, train_fn)
                inflight[ref] = spec
            bar.show(len(inflight), force=changed)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            changed = bool(ready)
            for ref in ready:
                spec = inflight.pop(ref)
                try:
                    result, error = ray.get(ref), None
                except ray.exceptions.RayError as e:
                    result, error = None, _one_line(e)
                    if attempts[spec.key] <= dispatch.max_failures:
                        bar.message(f"retrying {spec.key} (attempt {attempts[spec.key]}: {error})")
                        bar.retried += 1
                        queue.insert(0, spec)
                        continue
                record = make_record(spec, result, attempts=attempts[spec.key], error=error)
                write_record(run_dir, record)
                records[spec.key] = record
                if record["status"] == "done":
                    bar.done += 1
                else:
                    bar.failed += 1
                    bar.message(f"{spec.key}: {record['status']}: {record['failed']}")
        bar.show(0, force=True)
        bar.close()
    except KeyboardInterrupt:
        for ref in inflight:  # an embedded instance dies with the driver; a cluster does not
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_ray:
            ray.shutdown()
    return records


def _one_line(error: BaseException) -> str:
    """The last line of a remote traceback (the exception itself) or the error's first line."""
    lines = [l.strip() for l in str(error).strip().splitlines() if l.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]
