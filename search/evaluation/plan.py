"""What an evaluation is: the losses (named, a genome, the top of a search, baselines), the
plan of (loss, task, seed) runs, and its run folder; ``evaluate`` runs the plan through
:mod:`search.runs.eval_dispatch` and writes the report (:mod:`search.report.eval_report`).

Run folder (``--run results/NAME``):
- ``eval_config.json``: the command line, the plan (every run's resolved config), versions and
  git commit, written before the first run starts;
- ``records/<key>.json``: one per finished run (see :mod:`search.runs.eval_dispatch`);
- ``runs/<key>/``: the training run's own folder (``rl.train.train``'s run_dir);
- the report: curves.csv, summary.csv, comparison.csv, summary.md, plots/<task>.png.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from rl.config import TrainConfig, resolve
from rl.run_dir import atomic_write_json, git_commit, versions
from search.runs.eval_dispatch import (RECORDS, Dispatch, DispatchError, load_records, make_record,
                                  run_plan, write_record)
from spaces import NAMED_LOSSES, Genome, GenomeError, build_error, named

__all__ = ["PAPER_TASKS", "DEFAULT_STEPS", "REPORT_STEPS", "BASELINES", "CONFIG_FILE", "RECORDS", "EvalError",
           "Loss", "genome_loss", "parse_genome", "named_losses", "top_losses",
           "baseline_losses", "RunSpec", "Plan", "parse_seeds", "build_plan", "write_config",
           "check_run_folder", "evaluate", "Dispatch", "DispatchError", "load_records",
           "make_record", "run_plan", "write_record"]

# The paper's Table 2 tasks (SPEC section 5) and budget: returns at 100k and 500k env steps.
PAPER_TASKS = ("cheetah_run", "reacher_easy", "walker_walk", "finger_spin", "cartpole_swingup",
               "ball_in_cup_catch")
DEFAULT_STEPS = 500_000
REPORT_STEPS = (100_000, 500_000)
BASELINES = {"sac": ("SAC", "pixel_sac"), "curl": ("CURL", "curl_sac")}
CONFIG_FILE = "eval_config.json"


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
    for config in {r.config.action_repeat: r.config for r in runs}.values():
        every = config.eval_every_agent_steps * config.action_repeat
        missed = [s for s in REPORT_STEPS if s <= config.num_train_steps and s % every]
        if missed:
            print(f"note: with --eval_freq {config.eval_freq} and action repeat "
                  f"{config.action_repeat} ({config.task}) no checkpoint falls on "
                  f"{', '.join(map(str, missed))} env steps; the report uses the last one before",
                  file=sys.stderr)
    return Plan(tuple(unique.values()), tasks, tuple(seeds), tuple(runs))


def write_config(run_dir: Path, plan: Plan, argv: Sequence[str], dispatch: Dispatch) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, {
        "argv": list(argv), "plan": plan.to_dict(), "dispatch": dataclasses.asdict(dispatch),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "git_commit": git_commit(), "versions": versions()})


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


def evaluate(plan: Plan, run_dir: str | os.PathLike, dispatch: Dispatch, *,
             argv: Sequence[str], train_fn: Callable | None = None) -> list[Path]:
    """Record the plan (unless resuming), train what is not recorded, write the report."""
    from search.report.eval_report import write_report

    run_dir = Path(run_dir)
    fresh = not (run_dir / CONFIG_FILE).is_file()
    created = not run_dir.exists()
    if fresh:
        write_config(run_dir, plan, argv, dispatch)
    try:
        run_plan(plan, run_dir, dispatch, train_fn=train_fn)
    except DispatchError:
        if fresh and not load_records(run_dir):  # the cluster refused before any run: undo
            (run_dir / CONFIG_FILE).unlink()
            if created:
                run_dir.rmdir()
        raise
    return write_report(run_dir)

