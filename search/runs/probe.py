"""The start-up estimate of how long the runs take: :func:`rl.probe.probe` of each distinct
training config, in a Ray task with a trial's resources (so on a cluster it times a worker
node, with its GPU when trials get one), before the first trial starts.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from rl.config import TrainConfig
from rl.probe import StepTimes
from search.runs.config import DispatchConfig

ProbeFn = Callable[[TrainConfig], StepTimes]   # tests: a fake in the driver


def _probe_task(config: dict, threads: int, use_gpu: bool, seconds: float) -> dict:
    from rl.probe import probe

    train = TrainConfig.from_dict(config)
    if not use_gpu and train.device == "auto":
        train = train.replace(device="cpu")
    return dataclasses.asdict(probe(train, seconds=seconds, threads=threads))


def probe_runs(configs: Sequence[TrainConfig], dispatch: DispatchConfig, *,
               seconds: float = 3.0, probe_fn: ProbeFn | None = None,
               timeout_s: float = 600.0) -> tuple[list[StepTimes | None], str]:
    """The step times of each config (:meth:`StepTimes.run_seconds` turns them into a
    run's seconds, also for the same loss on another task), and a line saying how they
    were measured; a probe that fails gives None (the ETA then waits for finished runs)."""
    if probe_fn is not None:
        times = [probe_fn(c) for c in configs]
        return times, f"probe (given): {times[0].describe()}" if times else "probe: nothing to probe"
    import ray

    task = ray.remote(_probe_task).options(num_cpus=dispatch.cpus_per_trial,
                                           num_gpus=dispatch.gpus_per_trial, max_retries=0)
    refs = [task.remote(c.to_dict(), dispatch.threads, dispatch.gpus_per_trial > 0, seconds)
            for c in configs]
    out: list[StepTimes | None] = []
    details: list[str] = []
    for ref in refs:
        try:
            result = ray.get(ref, timeout=timeout_s)
        except Exception as err:  # a probe must never stop the run it estimates
            out.append(None)
            details.append(f"failed ({str(err).strip().splitlines()[-1][:120] if str(err).strip() else type(err).__name__})")
            continue
        out.append(StepTimes(**result))
        details.append(out[-1].describe())
    shown = details[0] if len(set(details)) == 1 else "; ".join(dict.fromkeys(details))
    return out, f"probe on a worker with a trial's resources: {shown}"
