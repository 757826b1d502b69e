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
from search.runs.config import DispatchError
from search.runs.folder import RunFolder, RunFolderError

ENGINE_FLAGS = {
    "strategy": (str, "generational | steady | random"),
    "population": (int, "genomes per generation (steady: population size)"),
    "budget": (int, "distinct genomes to train"),
    "seeds_per_candidate": (int, "RL seeds per genome; fitness = mean approx AULC over them"),
    "elite_reevals": (int, "after the budget, the top N genomes again on fresh seeds"),
    "survivor_fraction": (float, "share of a generation that survives (paper: 0.25)"),
    "tournament": (int, "steady strategy: tournament size"),
    "seed_losses": (str, "comma-separated named losses or canonical genomes in the initial population"),
    "seed": (int, "seed of the search's own random choices"),
}
DISPATCH_FLAGS = {
    "address": (str, "join this Ray cluster, e.g. auto or HOST:PORT (default: an embedded "
                     "local Ray instance on the loopback)"),
    "num_cpus": (int, "CPUs of the embedded instance (default: this machine's)"),
    "cpus_per_candidate": (float, "CPUs per trial, also its torch threads"),
    "gpus_per_candidate": (float, "GPUs per trial; fractions share a GPU between candidates"),
    "max_failures": (int, "retries of a crashed trial before it is recorded as failed"),
    "max_concurrent": (int, "trials at once (default: as many as the resources hold)"),
}
# DispatchConfig's fields by this command's flags, and back (for error messages).
DISPATCH_FLAGS_TO_FIELDS = {"cpus_per_candidate": "cpus_per_trial",
                            "gpus_per_candidate": "gpus_per_trial"}
DISPATCH_FIELDS_TO_FLAGS = {v: k for k, v in DISPATCH_FLAGS_TO_FIELDS.items()}
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
    for name, (kind, text) in ENGINE_FLAGS.items():
        g.add_argument(f"--{name}", type=kind, help=text)
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


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated command: what to run and where; nothing written yet."""

    setup: SearchSetup
    path: Path
    resume: bool
    notes: tuple[str, ...] = ()


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
    notes.append(f"{preset}: {PRESETS[preset].summary}")
    engine = {k: args[k] for k in ENGINE_FLAGS if k in args}
    if "seed_losses" in engine:
        engine["seed_losses"] = tuple(s.strip() for s in engine["seed_losses"].split(",") if s.strip())
    train = {k: args[k] for k in TRAIN_FLAGS if k in args}
    try:
        setup = build_setup(preset, engine=engine, train=train, dispatch=dispatch,
                            fitness=args.get("fitness", "rl"))
    except DispatchError as err:
        raise err.as_flags(DISPATCH_FIELDS_TO_FLAGS) from None
    path = Path(args["run"]) if "run" in args else \
        Path("results") / run_name(setup, stamp or time.strftime("%Y%m%d-%H%M%S"))
    RunFolder.check_new(path, setup.to_config())
    notes.append(f"run folder: {path}")
    return Plan(setup, path, False, tuple(notes))


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
        return _fail(err)
    return execute(todo, train_fn=train_fn, probe_fn=probe_fn, stream=stream)


def execute(todo: Plan, *, train_fn: Any = None, probe_fn: Any = None,
            stream: TextIO | None = None) -> int:
    """Create or reopen the run folder and run the search to its budget.

    Returns 0 when the search finished, 130 when it stopped early (resume it), 2 when the
    Ray cluster cannot be joined or cannot hold one candidate (one line, nothing written).
    ``train_fn``/``probe_fn`` replace rl.train.train and the start-up probe (tests only)."""
    # Imported here: Ray Tune takes seconds to import, bad input should not wait for it.
    from search.evolution.engine import ROW_COLUMNS, Engine
    from search.runs import cluster
    from search.runs.display import Display, Eta
    from search.runs.session import SearchSession, best_lines, engine_snapshot, run_planted

    setup = todo.setup
    notes = list(todo.notes)
    slots = 1
    owned = not setup.planted and not cluster.is_connected()  # else: left as found
    if not setup.planted:
        try:  # before the run folder: a cluster that cannot take the search writes nothing
            notes.append(cluster.init_ray(setup.dispatch))
            slots = cluster.concurrency(setup.dispatch)
        except DispatchError as err:
            if owned:
                cluster.shutdown()
            return _fail(err.as_flags(DISPATCH_FIELDS_TO_FLAGS))
    try:
        session_info = {"resume": todo.resume, "dispatch": setup.dispatch.to_dict()}
        if todo.resume:
            folder = RunFolder.load(todo.path)
            folder.begin_session(session_info)
            engine = Engine.from_state_dict(folder.engine_state())
            done = engine_snapshot(engine)
            notes.append(f"resumed: {done.finished} of {done.total} candidates done, "
                         f"{engine.jobs_left()} runs to go ({len(engine.in_flight())} were in "
                         f"flight and run again)")
        else:
            engine = Engine(setup.engine)
            folder = RunFolder.create(todo.path, setup.to_config(), engine.state_dict(),
                                      engine.rows(), ROW_COLUMNS, session_info)
        eta = Eta(slots=slots)
        if not setup.planted and not engine.finished:
            notes += startup_lines(setup, engine.jobs_left(), slots, eta, probe_fn)
        display = Display(stream, log=folder.log_event, eta=eta)
        session = SearchSession(engine, folder, display, base=setup.train,
                                min_interval_s=1.0 if setup.planted else 0.0)
        session.save()  # on resume: population views rebuilt from the engine state
        resume_hint = f"python search.py --resume {folder.path}"
        try:
            with display:
                for note in notes:
                    display.info(note)
                if engine.finished:
                    display.info("the search had already finished")
                elif setup.planted:
                    run_planted(session, setup.planted_target)
                else:
                    from search.runs.tuner import run_jobs

                    run_jobs(session, setup.dispatch, folder.tune_dir, train_fn=train_fn)
        except KeyboardInterrupt:
            print(f"interrupted; continue with: {resume_hint}", file=display.stream)
            return 130
    finally:
        if owned:
            cluster.shutdown()
    if not engine.finished:
        print(f"stopped before the budget was spent; continue with: {resume_hint}",
              file=display.stream)
        return 130
    lines = [f"done: {folder.path}", *best_lines(engine.rows()),
             f"report: python search.py report {folder.path}"]
    print("\n".join(lines), file=display.stream, flush=True)
    return 0


def startup_lines(setup: SearchSetup, runs: int, slots: int, eta: Any, probe_fn: Any) -> list[str]:
    """What the search starts, and how long it will take by a probe of its training config
    on a worker of this cluster (sets ``eta.run_s``)."""
    from search.runs.display import clock
    from search.runs.probe import probe_runs

    t, e = setup.train, setup.engine
    net = (f"{t.encoder_type} {t.encoder_hidden_size}x{t.num_layers}" if not t.from_pixels
           else f"pixels {t.image_size}px")
    elites = e.elite_reevals * e.seeds_per_candidate
    lines = [f"search: {e.budget} genomes x {e.seeds_per_candidate} seed(s) = "
             f"{e.budget * e.seeds_per_candidate} training runs"
             + (f" + {elites} elite re-runs" if elites else "")
             + f", each {t.num_train_steps} env steps ({t.agent_steps} agent steps) of {t.agent} on "
             f"{t.task} ({net}, batch {t.batch_size}, hidden {t.hidden_dim}), {slots} at a time"]
    (times,), how = probe_runs([t.replace(seed=1)], setup.dispatch, probe_fn=probe_fn)
    eta.run_s = run_s = None if times is None else times.run_seconds(t)
    if run_s is None:
        return lines + [f"{how}; no estimate until runs finish"]
    return lines + [f"{how} -> about {clock(run_s)} a run; {runs} runs to go: about "
                    f"{clock(eta.seconds_left(runs))}"]


def _fail(err: Exception) -> int:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if not message.startswith("search.py"):
        message = f"search.py: error: {message}"
    print(message, file=sys.stderr)
    return 2


def _report(argv: list[str]) -> int:
    p = _Parser(prog="search.py report", description="Tables and figures of a search run.")
    p.add_argument("run", help="the run folder, e.g. results/NAME")
    p.add_argument("--top", type=int, default=5, help="how many of the best genomes to list")
    try:
        args = p.parse_args(argv)
        from search.report.search_report import write_report
        write_report(args.run, top_k=args.top)
    except (ValueError, OSError) as err:  # ReportError is a ValueError
        return _fail(err)
    return 0
