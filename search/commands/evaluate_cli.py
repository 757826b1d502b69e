"""``evaluate.py``: evaluate auxiliary losses against SAC and CURL over tasks and seeds, on Ray.

    python evaluate.py --loss a2-winner --domain_name cartpole_swingup --run results/eval1
    python evaluate.py --from results/search1 --top 3 --encoder_type pixel
    python evaluate.py --genome "k4 s10000/a1111/r1101 > s01111/a0000/r0000 mse"
    python evaluate.py --resume --run results/eval1      # continue a killed evaluation
    python evaluate.py --report --run results/eval1      # rebuild the report only

Every field of ``rl.config.TrainConfig`` is a flag, as in train.py. Each run is a Ray Tune
trial, as a search's candidates are (search/runs/tuner.py). Bad input: one line, exit
code 2, nothing written.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rl.cli import GENOME_FLAGS, add_config_flags
from rl.config import TrainConfig
from search.evaluation import folder as store
from search.evaluation.losses import (EvalError, baseline_losses, genome_loss, named_losses,
                                      parse_genome, top_losses)
from search.evaluation.plan import DEFAULT_STEPS, PAPER_TASKS, Plan, build_plan, parse_seeds
from search.runs.config import DispatchConfig, DispatchError
from spaces import Genome, GenomeError

# TrainConfig fields the evaluation sets itself (per run) or names differently.
OWN_FIELDS = {"domain_name", "task_name", "agent", "seed", "genome", "work_dir", "num_train_steps"}
FIELDS_TO_FLAGS = {"cpus_per_trial": "cpus_per_run", "gpus_per_trial": "gpus_per_run"}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage first
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="evaluate.py", description=__doc__.splitlines()[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    what = p.add_argument_group("what to evaluate")
    what.add_argument("--loss", action="append", default=[], help="named losses, comma-separated")
    what.add_argument("--genome", action="append", default=[], help="a genome in canonical form")
    what.add_argument("--from", dest="from_", metavar="SEARCH_DIR", help="a search run folder")
    what.add_argument("--top", type=int, default=3, help="with --from: how many of its best")
    what.add_argument("--baselines", default="sac,curl",
                      help="sac, curl, state-sac (SAC on states, identity encoder): a comma "
                           "list, or none")
    where = p.add_argument_group("where")
    where.add_argument("--domain_name", nargs="+", default=list(PAPER_TASKS),
                       help="tasks (space or comma separated)")
    where.add_argument("--seeds", default="5", help="a count (seeds 1..N) or a comma list")
    where.add_argument("--num_train_steps", type=int, default=DEFAULT_STEPS,
                       help="environment steps per run")
    run = p.add_argument_group("dispatch")
    run.add_argument("--run", help="run folder (default results/eval-DATE-TIME)")
    run.add_argument("--resume", action="store_true", help="continue the evaluation in --run")
    run.add_argument("--report", action="store_true", help="only rebuild --run's report")
    run.add_argument("--address", help="Ray cluster address, e.g. auto or HOST:PORT (default: an "
                     "embedded local instance on the loopback)")
    run.add_argument("--num_cpus", type=int, help="CPUs of the embedded instance (default: all)")
    run.add_argument("--cpus_per_run", type=float, default=1.0, help="also the run's torch threads")
    run.add_argument("--gpus_per_run", type=float, default=0.0)
    run.add_argument("--max_failures", type=int, default=2, help="retries of a crashed run")
    run.add_argument("--max_concurrent", type=int, help="runs at once (default: as many as fit)")
    run.add_argument("--members_per_trial", type=int, default=1,
                     help="seeds of one loss trained as one batched model in a trial (1: a "
                          "trial each)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    train = p.add_argument_group("training flags (as train.py)")
    add_config_flags(train, skip=OWN_FIELDS)
    for name in GENOME_FLAGS:  # a genome given as the A2LS flags; missing masks are zeros
        if name == "penalize_negative":
            train.add_argument("--penalize_negative", action="store_true", default=None)
        else:
            train.add_argument(f"--{name}", default=None)
    return p


def _given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> set[str]:
    return {k for k, v in vars(args).items() if v != parser.get_default(k)}


def losses_from_args(args: argparse.Namespace) -> list:
    losses = named_losses(n.strip() for spec in args.loss for n in spec.split(",") if n.strip())
    losses += [parse_genome(text) for text in args.genome]
    flags = {k: getattr(args, k) for k in GENOME_FLAGS if getattr(args, k) is not None}
    if flags:
        try:
            genome = Genome.from_flags(flags)
        except GenomeError as e:
            raise EvalError(str(e)) from None
        losses.append(genome_loss(genome, "--auxi_pred_* flags", "--auxi_pred_*"))
    if args.from_:
        losses += top_losses(args.from_, args.top)
    return losses


def plan_from_args(args: argparse.Namespace, explicit_baselines: bool) -> Plan:
    losses = losses_from_args(args)
    if not losses and not explicit_baselines:
        raise EvalError("nothing to evaluate: give --loss, --genome, --from or the "
                        "--auxi_pred_* flags (or --baselines alone to evaluate baselines)")
    losses += baseline_losses(args.baselines)
    tasks = [t.strip() for spec in args.domain_name for t in spec.split(",") if t.strip()]
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name not in OWN_FIELDS}
    base = TrainConfig(num_train_steps=args.num_train_steps, **values)
    return build_plan(losses, tasks, parse_seeds(args.seeds), base)


def dispatch_from_args(args: argparse.Namespace) -> DispatchConfig:
    try:
        return DispatchConfig(address=args.address, num_cpus=args.num_cpus,
                              cpus_per_trial=args.cpus_per_run, gpus_per_trial=args.gpus_per_run,
                              max_failures=args.max_failures, max_concurrent=args.max_concurrent,
                              members_per_trial=args.members_per_trial)
    except DispatchError as err:
        raise err.as_flags(FIELDS_TO_FLAGS) from None


def main(argv: Sequence[str] | None = None, *, train_fn: Callable | None = None,
         probe_fn: Callable | None = None) -> int:
    """``train_fn``/``probe_fn`` replace ``rl.train.train`` and the start-up probe (tests only)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run_dir = Path(args.run or time.strftime("results/eval-%Y%m%d-%H%M%S"))
        if (args.resume or args.report) and not args.run:
            raise EvalError(f"--{'resume' if args.resume else 'report'}: needs --run FOLDER")
        if args.report:
            store.read_config(run_dir, "--report")
            from search.report.eval_report import write_report
            print("\n".join(map(str, write_report(run_dir))))
            return 0
        if args.resume and (run_dir / store.CONFIG_FILE).is_file():
            # the evaluation X was started with; flags given now override its flags, and the
            # plan they make must be the stored one (checked below)
            first_argv = store.read_config(run_dir)["argv"]
            first = parser.parse_args(first_argv)
            for key in _given(parser, args):
                setattr(first, key, getattr(args, key))
            args, argv = first, first_argv + argv
        plan = plan_from_args(args, any(a.startswith("--baselines") for a in argv))
        dispatch = dispatch_from_args(args)
        if plan.runs[0].config.save_buffer:
            raise EvalError("--save_buffer: a replay buffer (GBs) cannot come back from a Ray "
                            "worker; save buffers with train.py")
        store.check_run_folder(plan, run_dir, args.resume)
    except ValueError as e:  # EvalError, GenomeError, DispatchError and TrainConfig's errors
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    return execute(plan, run_dir, dispatch, argv=argv, quiet=args.quiet, train_fn=train_fn,
                   probe_fn=probe_fn)


def execute(plan: Plan, run_dir: Path, dispatch: DispatchConfig, *, argv: Sequence[str],
            quiet: bool = False, train_fn: Callable | None = None,
            probe_fn: Callable | None = None) -> int:
    """Join or start Ray, record the plan (unless resuming), train what is not recorded,
    write the report. 0 when every run is recorded, 130 after Ctrl-C, 2 when the cluster
    cannot be used (one line; a new run folder is not created)."""
    import io

    from search.evaluation.session import EvalSession
    from search.report.eval_report import write_report
    from search.runs import cluster
    from search.runs.display import Display, Eta

    display = Display(io.StringIO() if quiet else None, eta=Eta())
    owned = not cluster.is_connected()  # an instance this process joined before stays up
    try:
        try:
            ray_line = cluster.init_ray(dispatch)
            slots = cluster.concurrency(dispatch)
        except DispatchError as err:
            print(f"evaluate.py: error: {err.as_flags(FIELDS_TO_FLAGS)}", file=sys.stderr)
            return 2
        if not (run_dir / store.CONFIG_FILE).is_file():
            store.write_config(run_dir, plan, argv, dispatch.to_dict())
        session = EvalSession(plan, run_dir, display, dispatch.members_per_trial > 1)
        display.eta.slots = slots
        display.log = lambda line: _log(run_dir, line)
        display.info(f"evaluation: {len(plan.losses)} losses x {len(plan.tasks)} tasks x "
                     f"{len(plan.seeds)} seeds = {len(plan.runs)} runs in {run_dir} "
                     f"({len(session.todo)} to train, {session.recorded_before} recorded before)")
        display.info(ray_line)
        try:
            if session.todo:  # printed as they come: the probe takes seconds
                display.eta = startup_lines(session, dispatch, slots, probe_fn, display.info)
            with display:
                if session.todo:
                    from search.runs.tuner import run_jobs

                    run_jobs(session, dispatch, run_dir / "tune", train_fn=train_fn)
        except KeyboardInterrupt:
            print(f"\ninterrupted; finished runs are recorded: continue with "
                  f"python evaluate.py --resume --run {run_dir}", file=sys.stderr)
            return 130
    finally:
        if owned:
            cluster.shutdown()
    if not session.finished:
        print(f"stopped before every run was recorded; continue with python evaluate.py "
              f"--resume --run {run_dir}", file=sys.stderr)
        return 130
    print("\n".join(map(str, write_report(run_dir))))
    return 0


def startup_lines(session: Any, dispatch: DispatchConfig, slots: int,
                  probe_fn: Callable | None, emit: Callable[[str], None]) -> Any:
    """Says (``emit(line)``) how long each run is, then the ETA from a probe of each loss
    (on its first task), played over the slots as the runs will be handed out (cohorts
    included); returns that forecast (the status line's ETA)."""
    from search.commands.outlook import QueuePlan
    from search.runs.display import clock
    from search.runs.forecast import PROBE_FACTOR, Durations, Forecast, cost_key
    from search.runs.probe import probe_runs

    todo = session.todo
    lengths = sorted({(s.task, s.config.num_train_steps, s.config.agent_steps) for s in todo})
    emit("each run: " + "; ".join(f"{task} {steps} env steps ({agent} agent steps)"
                                  for task, steps, agent in lengths) + f"; {slots} at a time")
    first_of = {}
    for spec in todo:
        first_of.setdefault(spec.loss, spec.config)
    times, how = probe_runs(list(first_of.values()), dispatch, probe_fn=probe_fn, slots=slots)
    by_loss = dict(zip(first_of, times))
    probed = {cost_key(s.config): by_loss[s.loss].run_seconds(s.config) * PROBE_FACTOR
              for s in todo if by_loss[s.loss]}
    forecast = Forecast(lambda: QueuePlan(session.left()), Durations(probed), slots,
                        size=dispatch.members_per_trial, plays=1)
    if len(probed) < len({cost_key(s.config) for s in todo}):
        emit(f"{how}; no estimate until runs finish")
        return forecast
    mean = sum(probed[cost_key(s.config)] for s in todo) / len(todo)
    emit(f"{how} -> about {clock(mean)} a run on average; {len(todo)} runs: "
         f"about {clock(forecast.seconds_left())}")
    return forecast


def _log(run_dir: Path, line: str) -> None:
    with open(run_dir / "events.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
