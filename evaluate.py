"""Evaluate auxiliary losses against SAC and CURL over tasks and seeds, on Ray.

    python evaluate.py --loss a2-winner --domain_name cartpole_swingup --run results/eval1
    python evaluate.py --from results/search1 --top 3 --encoder_type pixel
    python evaluate.py --genome "k4 s10000/a1111/r1101 > s01111/a0000/r0000 mse"
    python evaluate.py --resume --run results/eval1      # continue a killed evaluation
    python evaluate.py --report --run results/eval1      # rebuild the report only

Every field of ``rl.config.TrainConfig`` is a flag, as in train.py. Bad input: one line,
exit code 2, nothing written.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from rl.cli import GENOME_FLAGS, add_config_flags
from rl.config import TrainConfig
from spaces import Genome, GenomeError
from search.evaluation import plan as ev

# TrainConfig fields the evaluation sets itself (per run) or names differently.
OWN_FIELDS = {"domain_name", "task_name", "agent", "seed", "genome", "work_dir", "num_train_steps"}


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
    what.add_argument("--baselines", default="sac,curl", help="sac, curl (comma list) or none")
    where = p.add_argument_group("where")
    where.add_argument("--domain_name", nargs="+", default=list(ev.PAPER_TASKS),
                       help="tasks (space or comma separated)")
    where.add_argument("--seeds", default="5", help="a count (seeds 1..N) or a comma list")
    where.add_argument("--num_train_steps", type=int, default=ev.DEFAULT_STEPS,
                       help="environment steps per run")
    run = p.add_argument_group("dispatch")
    run.add_argument("--run", help="run folder (default results/eval-DATE-TIME)")
    run.add_argument("--resume", action="store_true", help="continue the evaluation in --run")
    run.add_argument("--report", action="store_true", help="only rebuild --run's report")
    run.add_argument("--address", help="Ray cluster address (default: an embedded local instance)")
    run.add_argument("--num_cpus", type=int, help="CPUs of the embedded instance (default: all)")
    run.add_argument("--cpus_per_run", type=float, default=1.0)
    run.add_argument("--gpus_per_run", type=float, default=0.0)
    run.add_argument("--max_failures", type=int, default=2, help="retries of a crashed run")
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


def losses_from_args(args: argparse.Namespace) -> list[ev.Loss]:
    losses = ev.named_losses(n.strip() for spec in args.loss for n in spec.split(",") if n.strip())
    losses += [ev.parse_genome(text) for text in args.genome]
    flags = {k: getattr(args, k) for k in GENOME_FLAGS if getattr(args, k) is not None}
    if flags:
        try:
            genome = Genome.from_flags(flags)
        except GenomeError as e:
            raise ev.EvalError(str(e)) from None
        losses.append(ev.genome_loss(genome, "--auxi_pred_* flags", "--auxi_pred_*"))
    if args.from_:
        losses += ev.top_losses(args.from_, args.top)
    return losses


def plan_from_args(args: argparse.Namespace, explicit_baselines: bool) -> ev.Plan:
    losses = losses_from_args(args)
    if not losses and not explicit_baselines:
        raise ev.EvalError("nothing to evaluate: give --loss, --genome, --from or the "
                           "--auxi_pred_* flags (or --baselines alone to evaluate baselines)")
    losses += ev.baseline_losses(args.baselines)
    tasks = [t.strip() for spec in args.domain_name for t in spec.split(",") if t.strip()]
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name not in OWN_FIELDS}
    base = TrainConfig(num_train_steps=args.num_train_steps, **values)
    return ev.build_plan(losses, tasks, ev.parse_seeds(args.seeds), base)


def main(argv: Sequence[str] | None = None, *, train_fn: Callable | None = None) -> int:
    """``train_fn`` replaces ``rl.train.train`` (tests only)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run_dir = Path(args.run or time.strftime("results/eval-%Y%m%d-%H%M%S"))
        stored = run_dir / ev.CONFIG_FILE
        if (args.resume or args.report) and not args.run:
            raise ev.EvalError(f"--{'resume' if args.resume else 'report'}: needs --run FOLDER")
        if args.report:
            if not stored.is_file():
                raise ev.EvalError(f"--report: {run_dir} holds no evaluation ({ev.CONFIG_FILE})")
            from search.report.eval_report import write_report
            print("\n".join(map(str, write_report(run_dir))))
            return 0
        if args.resume and stored.is_file():
            # the evaluation X was started with; flags given now override its flags, and the
            # plan they make must be the stored one (checked below)
            first_argv = json.loads(stored.read_text())["argv"]
            first = parser.parse_args(first_argv)
            for key in _given(parser, args):
                setattr(first, key, getattr(args, key))
            args, argv = first, first_argv + argv
        plan = plan_from_args(args, any(a.startswith("--baselines") for a in argv))
        dispatch = ev.Dispatch(args.address, args.num_cpus, args.cpus_per_run, args.gpus_per_run,
                               args.max_failures, not args.quiet)
        ev.check_run_folder(plan, run_dir, args.resume)
    except ValueError as e:  # EvalError, GenomeError and TrainConfig's errors are ValueErrors
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    print(f"evaluation: {len(plan.losses)} losses x {len(plan.tasks)} tasks x {len(plan.seeds)} "
          f"seeds = {len(plan.runs)} runs in {run_dir}", file=sys.stderr)
    try:
        paths = ev.evaluate(plan, run_dir, dispatch, argv=argv, train_fn=train_fn)
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished runs are recorded: continue with "
              f"python evaluate.py --resume --run {run_dir}", file=sys.stderr)
        return 130
    except ev.DispatchError as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
