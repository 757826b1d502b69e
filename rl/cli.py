"""``train.py``: every flag of the released A2LS ``train.py``, parsed once into a TrainConfig.

Bad input gets one line naming the flag and the problem, exit code 2, and no run folder.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Sequence

from spaces import Genome, GenomeError, build_error, reject_reason
from rl.config import TrainConfig

GENOME_FLAGS = ("auxi_pred_horizon", "auxi_pred_input_s", "auxi_pred_input_a", "auxi_pred_input_r",
                "auxi_pred_input_s_", "auxi_pred_output_s", "auxi_pred_output_a",
                "auxi_pred_output_r", "auxi_pred_output_s_", "similarity_metric",
                "penalize_negative")

HELP = {
    "domain_name": "task as A2LS names it: cheetah_run, walker_walk, ball_in_cup_catch, ...",
    "num_train_steps": "environment steps (divided by the action repeat); default per task",
    "eval_freq": "environment steps between evaluations (default 10000)",
    "init_steps": "agent steps of random actions before updates start",
    "action_repeat": "default per task: 2 finger/walker, 8 cartpole, 4 otherwise",
    "auxi_ema": "passing it DISABLES the EMA target encoder (store_false, as the released code)",
    "seed": "-1 draws a random seed",
    "shared_window": "ours: one sampled window feeds both the RL and the auxiliary loss",
    "work_dir": "run folders go under WORK_DIR/AGENT/TASK/ (default results/train)",
    "run": "ours: exact run folder (overrides --work_dir naming)",
    "device": "ours: auto (CUDA when present), cpu or cuda",
}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage first
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_config_flags(parser, skip=()) -> None:
    """One ``--flag`` per TrainConfig field (not the genome), with its default and type."""
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.name == "genome" or field.name in skip:
            continue
        default = getattr(defaults, field.name)
        kwargs = {"help": HELP.get(field.name, " ")}
        if field.name == "auxi_ema":
            parser.add_argument("--auxi_ema", action="store_false", default=True, **kwargs)
        elif isinstance(default, bool):
            parser.add_argument(f"--{field.name}", action="store_true", default=default, **kwargs)
        else:
            kind = {"float": float, "int": int, "str": str}.get(
                str(field.type).replace("Optional[", "").rstrip("]"), str)
            parser.add_argument(f"--{field.name}", type=kind, default=default, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="train.py", description="Train SAC (+ an auxiliary loss) on DMC.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(p)
    genome = TrainConfig().genome.to_flags()
    for name in GENOME_FLAGS:
        if name == "penalize_negative":
            p.add_argument("--penalize_negative", action="store_true", default=False,
                           help="contrast with in-batch negative samples")
        else:
            p.add_argument(f"--{name}", type=str, default=str(genome[name]),
                           help="auxiliary loss genome (default: A2-winner)")
    p.add_argument("--run", type=str, default=None, help=HELP["run"])
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, list[str]]:
    """Returns the config and warnings; raises ValueError/GenomeError naming the flag."""
    genome = Genome.from_flags({k: getattr(args, k) for k in GENOME_FLAGS})
    warnings = []
    if args.agent == "auxi_sac":
        problem = build_error(genome)
        if problem:
            raise GenomeError(f"--auxi_pred_*: the auxiliary loss has an {problem}; it cannot be built")
        reason = reject_reason(genome)
        if reason:
            warnings.append(f"warning: the search would reject this loss ({reason}); training it anyway")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name != "genome"}
    return TrainConfig(genome=genome, **values), warnings


def default_run_dir(config: TrainConfig, work_dir: str) -> Path:
    base = Path("results/train") if work_dir == "." else Path(work_dir)
    stamp = time.strftime("%m%d-%H%M%S")
    name = (f"{config.task}-{stamp}-im{config.image_size}-b{config.batch_size}-s{config.seed}"
            f"-{config.encoder_type}")
    return base / config.agent / config.task / name


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rl.train import prepare, train  # torch import after argument errors are reported

    try:
        config, warnings = config_from_args(args)
        config = prepare(config)
    except ValueError as e:  # GenomeError is a ValueError
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(w, file=sys.stderr)
    run_dir = Path(args.run) if args.run else default_run_dir(config, args.work_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        print(f"train.py: error: --run: {run_dir} already holds a run; choose another folder",
              file=sys.stderr)
        return 2
    print(f"run folder: {run_dir}  ({config.agent}, {config.task}, {config.encoder_type}, "
          f"seed {config.seed}, {config.num_train_steps} env steps, action repeat "
          f"{config.action_repeat})", file=sys.stderr)
    result = train(config, run_dir, progress=not args.quiet)
    if result.failed:
        print(f"run failed: {result.failed}", file=sys.stderr)
        return 1
    print(f"final return {result.final_return:.1f}, approx AULC {result.approx_aulc:.1f}, "
          f"{result.wall_s:.0f}s; curve in {run_dir / 'eval.csv'}")
    return 0
