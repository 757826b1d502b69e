"""Evaluate losses against baselines: the plan of (loss, task, seed) runs, their dispatch
as Ray tasks, and the run folder's records that let a killed evaluation resume.

Run folder (``--run results/NAME``):
- ``eval_config.json``: the command line, the plan (every run's resolved config), versions and
  git commit, written before the first run starts;
- ``records/<key>.json``: one per finished run, written atomically by the driver as the run
  returns (a run is either recorded whole or not at all, so ``--resume`` reruns exactly the
  unrecorded ones);
- ``runs/<key>/``: the training run's own folder (``rl.train.train``'s run_dir);
- the report (``search.eval_report``).
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from rl.config import TrainConfig, resolve
from rl.run_dir import atomic_write_json, git_commit, versions
from spaces import Genome, GenomeError, build_error, named, NAMED_LOSSES

# The paper's Table 2 tasks (SPEC section 5) and budget: returns at 100k and 500k env steps.
PAPER_TASKS = ("cheetah_run", "reacher_easy", "walker_walk", "finger_spin", "cartpole_swingup",
               "ball_in_cup_catch")
DEFAULT_STEPS = 500_000
BASELINES = {"sac": ("SAC", "pixel_sac"), "curl": ("CURL", "curl_sac")}
CONFIG_FILE = "eval_config.json"
RECORDS = "records"


class EvalError(ValueError):
    """Bad user input; the message is one line naming the flag."""


# ---------------------------------------------------------------------------- losses
@dataclasses.dataclass(frozen=True)
class Loss:
    """One thing to evaluate: an auxiliary loss (auxi_sac + genome) or a baseline agent."""

    label: str                 # "a2-winner", "top1-<id>", "genome-<id>", "SAC", "CURL"
    agent: str                 # auxi_sac | pixel_sac | curl_sac
    genome: Genome | None      # None for baselines
    origin: str                # where it came from, for the report

    @property
    def is_baseline(self) -> bool:
        return self.genome is None

    def to_dict(self) -> dict:
        return {"label": self.label, "agent": self.agent, "origin": self.origin,
                "genome": str(self.genome) if self.genome else None}


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
    """``"sac,curl"`` (default), ``"sac"``, ``"none"``."""
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise EvalError(f"--baselines: unknown baseline {(', '.join(unknown) or spec)!r} "
                        f"(expected a comma list of {', '.join(BASELINES)}, or none)")
    return [Loss(BASELINES[n][0], BASELINES[n][1], None, "baseline") for n in dict.fromkeys(names)]


# ------------------------------------------------------------------------------ plan
@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run: a loss on a task with a seed; ``config`` is resolved."""

    key: str
    loss: str
    agent: str
    task: str
    seed: int
    config: TrainConfig

    def to_dict(self) -> dict:
        return {"key": self.key, "loss": self.loss, "agent": self.agent, "task": self.task,
                "seed": self.seed, "config": self.config.to_dict()}


@dataclasses.dataclass(frozen=True)
class Plan:
    losses: tuple[Loss, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    runs: tuple[RunSpec, ...]

    def to_dict(self) -> dict:
        first = self.runs[0].config
        return {"losses": [l.to_dict() for l in self.losses], "tasks": list(self.tasks),
                "seeds": list(self.seeds), "encoder_type": first.encoder_type,
                "num_train_steps": first.num_train_steps, "eval_freq": first.eval_freq,
                "num_eval_episodes": first.num_eval_episodes,
                "runs": [r.to_dict() for r in self.runs]}


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"5"`` = seeds 1..5; ``"1,4,9"`` = those seeds."""
    try:
        if "," in text:
            seeds = tuple(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
        else:
            seeds = tuple(range(1, int(text) + 1))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0:
        raise EvalError(f"--seeds: expected a count >= 1 or a comma list of seeds >= 0, got {text!r}")
    return seeds


def build_plan(losses: Sequence[Loss], tasks: Sequence[str], seeds: Sequence[int],
               base: TrainConfig) -> Plan:
    """Every (loss, task, seed), seed-major so that early results already cover every loss."""
    from rl.envs import parse_task  # dm_control import: only once the cheap checks passed

    unique: dict[str, Loss] = {}
    for loss in losses:
        same = next((u for u in unique.values() if u.agent == loss.agent and
                     str(u.genome) == str(loss.genome)), None)
        if same is None and loss.label not in unique:
            unique[loss.label] = loss
        else:
            print(f"note: {loss.label} ({loss.origin}) is evaluated once, as "
                  f"{(same or loss).label}", file=sys.stderr)
    if not unique:
        raise EvalError("nothing to evaluate: give --loss, --genome, --from or the "
                        "--auxi_pred_* flags (or choose --baselines)")
    tasks = tuple(dict.fromkeys(tasks))
    for task in tasks:
        parse_task(task)  # ValueError naming --domain_name
    runs = []
    for seed in seeds:
        for task in tasks:
            for loss in unique.values():
                changes = {"domain_name": task, "task_name": None, "agent": loss.agent,
                           "seed": seed}
                if loss.genome is not None:
                    changes["genome"] = loss.genome
                config = resolve(base.replace(**changes))  # ValueError naming the flag
                runs.append(RunSpec(f"{loss.label}__{task}__s{seed}", loss.label, loss.agent,
                                    task, seed, config))
    return Plan(tuple(unique.values()), tasks, tuple(seeds), tuple(runs))


# --------------------------------------------------------------------------- records
def load_records(run_dir: str | os.PathLike) -> dict[str, dict]:
    import json

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


def write_config(run_dir: Path, plan: Plan, argv: Sequence[str], dispatch: "Dispatch") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, {
        "argv": list(argv), "plan": plan.to_dict(), "dispatch": dataclasses.asdict(dispatch),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "git_commit": git_commit(), "versions": versions()})


def check_run_folder(plan: Plan, run_dir: Path, resume: bool) -> None:
    """A new evaluation needs an empty folder; ``--resume`` needs the same plan as stored."""
    import json

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
    old = json.loads(stored.read_text())["plan"]["runs"]
    new = json.loads(json.dumps([r.to_dict() for r in plan.runs], default=str))
    if old != new:
        old_keys, new_keys = [r["key"] for r in old], [r["key"] for r in new]
        if old_keys != new_keys:
            why = (f"{len(old_keys)} runs stored, {len(new_keys)} asked" if len(old_keys) != len(new_keys)
                   else f"run {next(a for a, b in zip(old_keys, new_keys) if a != b)} differs")
        else:
            o, n = next((o, n) for o, n in zip(old, new) if o != n)
            flag = next(k for k in n["config"] if o["config"].get(k) != n["config"][k])
            why = f"--{flag} differs in run {n['key']}"
        raise EvalError(f"--resume: {run_dir} holds a different evaluation ({why}); "
                        f"resume it with only --resume --run {run_dir}")


def evaluate(plan: Plan, run_dir: str | os.PathLike, dispatch: "Dispatch", *,
             argv: Sequence[str], train_fn: Callable | None = None) -> list[Path]:
    """Record the plan (unless resuming), train what is not recorded, write the report."""
    from search.eval_report import write_report

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        write_config(run_dir, plan, argv, dispatch)
    run_plan(plan, run_dir, dispatch, train_fn=train_fn)
    return write_report(run_dir)


# -------------------------------------------------------------------------- dispatch
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
    """done/running/failed counts, elapsed and ETA on one stderr line."""

    def __init__(self, enabled: bool, total: int, already: int, slots: int):
        self.enabled, self.total, self.already, self.slots = enabled, total, already, slots
        self.start = self.last = time.time()
        self.tty = sys.stderr.isatty()
        self.done = self.failed = self.retried = 0
        self.walls: list[float] = []

    def show(self, running: int, force: bool = False) -> None:
        now = time.time()
        if not self.enabled or (not force and now - self.last < (1.0 if self.tty else 60.0)):
            return
        self.last = now
        finished = self.already + self.done + self.failed
        left = self.total - finished
        eta = "-"
        if self.walls and left:
            per = sum(self.walls) / len(self.walls)
            eta = _clock(math.ceil(left / max(1, min(self.slots, left))) * per)
        line = (f"[evaluate] {finished}/{self.total} recorded ({self.already} before), "
                f"{running} running, {self.failed} failed, {self.retried} retried | "
                f"elapsed {_clock(now - self.start)} | ETA {eta}")
        print(("\r" + line.ljust(100)) if self.tty else line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_plan(plan: Plan, run_dir: str | os.PathLike, dispatch: Dispatch, *,
             train_fn: Callable | None = None) -> dict[str, dict]:
    """Train every run of ``plan`` not yet recorded in ``run_dir``; returns all records.

    Runs are Ray tasks with ``cpus_per_run``/``gpus_per_run`` resources, at most as many in
    flight as the cluster has room for. A run that raises or loses its worker is retried up
    to ``max_failures`` times, then recorded as ``error``.
    """
    import ray
    from search.cluster import init_ray

    run_dir = Path(run_dir)
    records = load_records(run_dir)
    todo = [r for r in plan.runs if records.get(r.key, {}).get("status") not in ("done", "diverged")]
    if not todo:
        return records
    started_ray = not ray.is_initialized()
    print(init_ray(dispatch.address, dispatch.num_cpus), file=sys.stderr)
    try:
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // max(dispatch.cpus_per_run, 1e-9))
        if dispatch.gpus_per_run > 0:
            slots = min(slots, int(resources.get("GPU", 0) // dispatch.gpus_per_run))
        if slots < 1:
            raise EvalError(f"--cpus_per_run/--gpus_per_run: the cluster ({resources.get('CPU', 0):.0f}"
                            f" CPUs, {resources.get('GPU', 0):.0f} GPUs) cannot hold one run")
        if resources.get("GPU", 0) and not dispatch.gpus_per_run:
            print("note: the cluster has GPUs but --gpus_per_run is 0: runs train on CPU",
                  file=sys.stderr)
        remote = ray.remote(_execute).options(
            num_cpus=dispatch.cpus_per_run, num_gpus=dispatch.gpus_per_run, max_retries=0)
        threads = max(1, int(dispatch.cpus_per_run))
        bar = _Progress(dispatch.progress, len(plan.runs), len(plan.runs) - len(todo), slots)
        queue, inflight, attempts = list(todo), {}, {r.key: 0 for r in todo}
        while queue or inflight:
            while queue and len(inflight) < slots:
                spec = queue.pop(0)
                attempts[spec.key] += 1
                ref = remote.remote(spec.config, str(run_dir / "runs" / spec.key), threads,
                                    dispatch.gpus_per_run > 0, train_fn)
                inflight[ref] = spec
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                spec = inflight.pop(ref)
                try:
                    result, error = ray.get(ref), None
                except ray.exceptions.RayError as e:
                    result, error = None, _one_line(e)
                    if attempts[spec.key] <= dispatch.max_failures:
                        print(f"\nretrying {spec.key} (attempt {attempts[spec.key]} failed: "
                              f"{error})", file=sys.stderr)
                        bar.retried += 1
                        queue.insert(0, spec)
                        continue
                record = make_record(spec, result, attempts=attempts[spec.key], error=error)
                write_record(run_dir, record)
                records[spec.key] = record
                if record["status"] == "done":
                    bar.done += 1
                    bar.walls.append(float(record["wall_s"] or 0.0))
                else:
                    bar.failed += 1
                    print(f"\n{spec.key}: {record['status']}: {record['failed']}", file=sys.stderr)
                bar.show(len(inflight), force=True)
            bar.show(len(inflight))
        bar.close()
    except KeyboardInterrupt:
        for ref in list(locals().get("inflight", {})):
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
