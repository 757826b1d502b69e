"""``search.py``: evolve auxiliary losses (A2LS), resume a killed search, or report on one.

  python search.py [--preset smoke|cpu|paper] [flags]     a new search in results/<auto name>
  python search.py --resume results/NAME                   continue a search whose driver died
  python search.py report results/NAME [--top 5]           tables and figures of a run

Bad input gets one line naming what is wrong and exit code 2, before anything is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from pathlib import Path
from typing import Any, Sequence, TextIO

from rl.config import TrainConfig
from search.commands.presets import (NOT_OVERRIDABLE, PRESETS, SearchSetup, auto_preset,
                            build_setup, run_name)
from search.commands.search_run import (DISPATCH_FIELDS_TO_FLAGS, DISPATCH_FLAGS_TO_FIELDS, Plan,
                                        execute, fail)
from search.runs.config import DispatchError
from search.runs.folder import RunFolder, RunFolderError

ENGINE_FLAGS = {
    "strategy": (str, "generational | steady | random"),
    "population": (int, "genomes per generation (steady: population size)"),
    "budget": (int, "distinct genomes to train"),
    "seeds_per_candidate": (int, "RL seeds per genome (1 with rungs); fitness = mean approx AULC"),
    "rungs": (str, "comma-separated env steps where a candidate may be stopped (ASHA), or none"),
    "reduction": (float, "at each rung, keep the top 1/REDUCTION of the candidates so far"),
    "finalist_seeds": (int, "extra full-length seeds for a candidate that reaches the top"),
    "survivor_fraction": (float, "share of a generation that survives (paper: 0.25)"),
    "tournament": (int, "steady strategy: tournament size"),
    "seed_losses": (str, "comma-separated named losses or canonical genomes in the initial population"),
    "seed": (int, "seed of the search's own random choices"),
}
VERDICT_FLAGS = {
    "verdict_top": (int, "after the budget, re-train the top N genomes on held-out seeds (0: no verdict)"),
    "verdict_seeds": (int, "held-out seeds per loss in the verdict"),
    "verdict_references": (str, "comma-separated references of the verdict: sac, state-sac, "
                                "curl or named losses"),
}
DISPATCH_FLAGS = {
    "address": (str, "join this Ray cluster, e.g. auto or HOST:PORT (default: an embedded "
                     "local Ray instance on the loopback)"),
    "num_cpus": (int, "CPUs of the embedded instance (default: this machine's)"),
    "cpus_per_candidate": (float, "CPUs per trial, also its torch threads"),
    "gpus_per_candidate": (float, "GPUs per trial; fractions share a GPU between candidates"),
    "max_failures": (int, "retries of a crashed trial before it is recorded as failed"),
    "max_concurrent": (int, "trials at once (default: as many as the resources hold)"),
    "members_per_trial": (int, "seeds of one genome trained as one batched model in a trial "
                               "(finalist seeds, the verdict's seeds; 1: a trial each)"),
}
TRAIN_FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_OVERRIDABLE)


class UsageError(ValueError):
    """Bad command-line input; its message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # argparse would print the usage first
        raise UsageError(f"{self.prog}: error: {message}")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _train_type(name: str) -> Any:
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="search.py", argument_default=argparse.SUPPRESS,
                description="Evolutionary search over auxiliary losses for SAC on DMC (A2LS). "
                            "Also: 'search.py report RUN [--top K]'.")
    g = p.add_argument_group("search")
    g.add_argument("--preset", help=f"{' | '.join(PRESETS)} (default: cpu without a GPU, paper with one); "
                   "every value can be overridden by a flag")
    g.add_argument("--fitness", help="rl (train each candidate) | planted:NAME_OR_GENOME "
                   "(similarity to a planted genome, in the driver, without Ray)")
    g.add_argument("--planted_noise", type=float,
                   help="planted fitness only: std of each evaluation's noise at the top rung, in "
                        "units of the similarity's std over random genomes (default 0: exact; 1: "
                        "as measured on cheetah_run); with noise, candidates climb the rungs")
    for name, (kind, text) in ENGINE_FLAGS.items():
        g.add_argument(f"--{name}", type=kind, help=text)
    v = p.add_argument_group("held-out verdict")
    for name, (kind, text) in VERDICT_FLAGS.items():
        v.add_argument(f"--{name}", type=kind, help=text)
    g.add_argument("--run", help="the run folder (default: results/<preset-task-strategy-time>)")
    g.add_argument("--resume", metavar="RUN", help="continue the search in this run folder")
    d = p.add_argument_group("dispatch (may change on --resume)")
    for name, (kind, text) in DISPATCH_FLAGS.items():
        d.add_argument(f"--{name}", type=kind, help=text)
    t = p.add_argument_group("training of each candidate (rl/config.py; override the preset)")
    for name in TRAIN_FLAGS:
        kind = _train_type(name)
        if kind is bool:
            t.add_argument(f"--{name}", type=_bool, nargs="?", const=True, metavar="BOOL")
        else:
            t.add_argument(f"--{name}", type=kind)
    return p


def plan(args: dict[str, Any], stamp: str | None = None) -> Plan:
    """Turn parsed flags into a Plan. Raises ValueError (one line) on bad input."""
    dispatch = {DISPATCH_FLAGS_TO_FIELDS.get(k, k): args[k] for k in DISPATCH_FLAGS if k in args}
    if "resume" in args:
        extra = sorted(k for k in args if k not in DISPATCH_FLAGS and k != "resume")
        if extra:
            raise UsageError(f"--resume continues a run with its own config; --{extra[0]} cannot "
                             f"be given (only {', '.join('--' + k for k in DISPATCH_FLAGS)})")
        folder = RunFolder.load(args["resume"])
        check_engine_state(folder)
        try:
            setup = SearchSetup.from_config(folder.config, dispatch)
        except DispatchError as err:
            raise err.as_flags(DISPATCH_FIELDS_TO_FLAGS) from None
        return Plan(setup, folder.path, True, (f"resuming {folder.path}",))
    notes = []
    preset = args.get("preset")
    if preset is None:
        preset, why = auto_preset()
        notes.append(f"preset: {preset} ({why}; choose with --preset {'|'.join(PRESETS)})")
    elif preset not in PRESETS:
        raise UsageError(f"--preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    notes.append(f"{preset}: {PRESETS[preset].purpose}")
    engine = {k: args[k] for k in ENGINE_FLAGS if k in args}
    if "seed_losses" in engine:
        engine["seed_losses"] = _comma_list(engine["seed_losses"])
    if "rungs" in engine:
        engine["rungs"] = _steps(engine["rungs"])
    verdict = {k[len("verdict_"):]: args[k] for k in VERDICT_FLAGS if k in args}
    if "references" in verdict:
        verdict["references"] = _comma_list(verdict["references"])
    train = {k: args[k] for k in TRAIN_FLAGS if k in args}
    try:
        setup = build_setup(preset, engine=engine, train=train, dispatch=dispatch,
                            verdict=verdict, fitness=args.get("fitness", "rl"),
                            planted_noise=args.get("planted_noise", 0.0))
    except DispatchError as err:
        raise err.as_flags(DISPATCH_FIELDS_TO_FLAGS) from None
    path = Path(args["run"]) if "run" in args else \
        Path("results") / run_name(setup, stamp or time.strftime("%Y%m%d-%H%M%S"))
    RunFolder.check_new(path, setup.to_config())
    notes.append(f"run folder: {path}")
    return Plan(setup, path, False, tuple(notes))


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _steps(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(int(part) for part in _comma_list(text))
    except ValueError:
        raise UsageError(f"--rungs: expected comma-separated env steps or none, got {text!r}") from None


def check_engine_state(folder: RunFolder) -> None:
    """Refuse, in one line and before Ray starts, an engine state this code cannot continue."""
    from search.evolution.engine import Engine

    try:
        Engine.from_state_dict(folder.engine_state())
    except (ValueError, KeyError, TypeError, IndexError) as err:  # RunFolderError is a ValueError
        if isinstance(err, RunFolderError):
            raise
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunFolderError(f"--resume: {folder.path}/engine.json cannot be continued by this "
                             f"code ({detail}); nothing was changed") from None


def main(argv: Sequence[str] | None = None, *, train_fn: Any = None, probe_fn: Any = None,
         stream: TextIO | None = None) -> int:
    """The command line. ``train_fn``/``probe_fn`` replace rl.train.train and the start-up
    probe (tests only)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:
            return _report(argv[1:])
        args = vars(build_parser().parse_args(argv))
        if "run" in args and "resume" in args:
            raise UsageError("give --run (a new search) or --resume (continue one), not both")
        todo = plan(args)
    except (ValueError, RunFolderError) as err:
        return fail(err)
    return execute(todo, train_fn=train_fn, probe_fn=probe_fn, stream=stream)


def _report(argv: list[str]) -> int:
    p = _Parser(prog="search.py report", description="Tables and figures of a search run.")
    p.add_argument("run", help="the run folder, e.g. results/NAME")
    p.add_argument("--top", type=int, default=5, help="how many of the best genomes to list")
    try:
        args = p.parse_args(argv)
        from search.report.search_report import write_report
        write_report(args.run, top_k=args.top)
    except (ValueError, OSError) as err:  # ReportError is a ValueError
        return fail(err)
    return 0
