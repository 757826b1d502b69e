"""The plan of an evaluation: every (loss, task, seed) run with its resolved TrainConfig."""
from __future__ import annotations

import dataclasses
import sys
from typing import Sequence

from rl.config import TrainConfig, resolve
from search.evaluation.losses import EvalError, Loss

# The paper's Table 2 tasks (SPEC section 5) and budget: returns at 100k and 500k env steps.
PAPER_TASKS = ("cheetah_run", "reacher_easy", "walker_walk", "finger_spin", "cartpole_swingup",
               "ball_in_cup_catch")
DEFAULT_STEPS = 500_000
REPORT_STEPS = (100_000, 500_000)


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
        same = next((u for u in unique.values() if u.agent == loss.agent and u.encoder ==
                     loss.encoder and str(u.genome) == str(loss.genome)), None)
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
                if loss.encoder is not None:
                    changes["encoder_type"] = loss.encoder
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
