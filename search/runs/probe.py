"""The start-up estimate of how long the runs take: :func:`rl.probe.probe` of each distinct
training config, in Ray tasks with a trial's resources (so on a cluster it times a worker
node, with its GPU when trials get one), before the first trial starts.

As many probes run at once as trials will (up to ``slots``): runs side by side are slower
than one alone (on the 2-core machine a lone probe said 5:28 a cpu-preset run, update
11.6 ms, and that day's lone runs, two at a time, took 7.5 to 14 min, other load included;
``bench/side_by_side.py`` measures the ratio), so each config is timed under the load its
runs will see, and the copies averaged.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from rl.config import TrainConfig
from rl.probe import StepTimes
from search.runs.config import DispatchConfig

ProbeFn = Callable[[TrainConfig, int], StepTimes]   # (config, members); tests: a fake in the driver
MAX_AT_ONCE = 16   # a node's worth of trials: the load that slows a run is its node's


def _probe_task(config: dict, threads: int, use_gpu: bool, seconds: float,
                members: int) -> dict:
    from rl.probe import probe

    train = TrainConfig.from_dict(config)
    if not use_gpu and train.device == "auto":
        train = train.replace(device="cpu")
    return dataclasses.asdict(probe(train, seconds=seconds, threads=threads, members=members))


def mean_times(times: Sequence[StepTimes]) -> StepTimes:
    """The field-wise mean of probes of one config."""
    fields = [f.name for f in dataclasses.fields(StepTimes)]
    mean = {f: sum(getattr(t, f) for t in times) / len(times) for f in fields}
    return StepTimes(**{**mean, "episode_steps": times[0].episode_steps})


def probe_runs(configs: Sequence[TrainConfig], dispatch: DispatchConfig, *,
               seconds: float = 3.0, probe_fn: ProbeFn | None = None,
               timeout_s: float = 600.0, slots: int = 1, details: bool = True,
               members: Sequence[int] | None = None) -> tuple[list[StepTimes | None], str]:
    """The step times of each config (:meth:`StepTimes.run_seconds` turns them into a
    run's seconds, also for the same loss on another task), and a line saying how they
    were measured; a probe that fails gives None (the ETA then waits for finished runs).
    ``slots``: the trials that will run at once; that many probes run at once, each
    config timed by ``slots // len(configs)`` of them (at least one; 16 probes at most).
    ``members[i]`` > 1: config i is timed as a cohort of that many seeds (the times are the
    cohort's, see :func:`rl.probe.probe`)."""
    members = list(members) if members is not None else [1] * len(configs)
    if len(members) != len(configs):
        raise ValueError(f"probe_runs: {len(members)} member counts for {len(configs)} configs")
    if probe_fn is not None:
        times = [probe_fn(c, m) for c, m in zip(configs, members)]
        if not times:
            return times, "probe: nothing to probe"
        return times, f"probe (given): {times[0].describe()}" if details else "probe (given)"
    import ray

    copies = max(1, min(slots, MAX_AT_ONCE) // max(1, len(configs)))
    task = ray.remote(_probe_task).options(num_cpus=dispatch.cpus_per_trial,
                                           num_gpus=dispatch.gpus_per_trial, max_retries=0)
    refs = [[task.remote(c.to_dict(), dispatch.threads, dispatch.gpus_per_trial > 0, seconds, m)
             for _ in range(copies)] for c, m in zip(configs, members)]
    out: list[StepTimes | None] = []
    texts: list[str] = []
    for group in refs:
        try:
            results = ray.get(group, timeout=timeout_s)
        except Exception as err:  # a probe must never stop the run it estimates
            out.append(None)
            texts.append(f"failed ({str(err).strip().splitlines()[-1][:120] if str(err).strip() else type(err).__name__})")
            continue
        out.append(mean_times([StepTimes(**r) for r in results]))
        texts.append(out[-1].describe())
    shown = texts[0] if len(set(texts)) == 1 else "; ".join(dict.fromkeys(texts))
    n = min(len(configs) * copies, max(1, slots))
    at_once = f", {n} at once as runs will be" if n > 1 else ""
    line = f"probe on a worker with a trial's resources{at_once}"
    return out, f"{line}: {shown}" if details else line
