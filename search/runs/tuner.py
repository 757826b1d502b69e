"""The one way training runs on Ray: every job is a Ray Tune trial.

A :class:`JobSource` (the search's engine session, or an evaluation's fixed list of runs)
plugs into Tune as a :class:`ray.tune.search.Searcher`, wrapped in a
``ConcurrencyLimiter``: ``suggest`` asks the source for its next job, ``on_trial_complete``
hands the :class:`~search.runs.jobs.Outcome` back, and the source records it in its run
folder. Tune's own experiment state is never read back: ``--resume`` starts a fresh Tuner
over what the run folder says is still to do, because Tune checkpoints its state only
periodically and a killed driver would replay or lose trials.

A crashed trial (an exception, a killed worker or node) is retried by Tune
(``FailureConfig(max_failures)``) without the source hearing of it, except for a line on
the display; after the last attempt the source gets an Outcome with ``error`` set. A run
that diverges is not a crash: it is reported with ``failed`` set, and not retried.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from search.runs.cluster import concurrency
from search.runs.cohorts import Cohorts
from search.runs.config import DispatchConfig
from search.runs.jobs import Job, Outcome, TrainFn, execute


class JobSource(Protocol):
    """What :func:`run_jobs` needs from the side that knows what to train."""

    @property
    def finished(self) -> bool:
        """Nothing left to hand out and nothing outstanding."""

    def next_job(self) -> Job | None:
        """The next job, or None to wait for results (only while some job is running)."""

    def started(self, job: Job) -> None:
        """``job`` was handed to Tune."""

    def record(self, job: Job, outcome: Outcome) -> None:
        """``job`` ended (trained, failed or crashed on every attempt)."""

    def retrying(self, job: Job, attempt: int, error: str) -> None:
        """``job`` crashed; Tune runs it again (``attempt`` = the attempt coming)."""

    def at_checkpoint(self, job: Job, env_step: int, aulc: float) -> bool:
        """``job`` reached one of its rungs with this AULC so far: go on (True) or stop."""


class JobSearcher(Searcher):
    """A JobSource as a Tune searcher: ``suggest`` = ``next_job``, completion = ``record``."""

    def __init__(self, source: JobSource) -> None:
        super().__init__(metric="approx_aulc", mode="max")
        self.source = source
        self.live: dict[str, Job] = {}           # Tune trial id -> job
        self.tune_trials: dict[str, Any] = {}    # Tune trial id -> Tune Trial (its error file)
        self.stopped: set[str] = set()           # trial ids the RungScheduler stopped
        self.crashed: BaseException | None = None  # what the source raised (Tune would swallow it)

    def guarded(self, call: Callable, *args: Any) -> Any:
        """Call the source; an exception it raises stops the whole run (run_jobs raises it
        again after Tune returns) instead of being lost in Tune's result handling."""
        if self.crashed is not None:
            return None
        try:
            return call(*args)
        except BaseException as err:  # noqa: BLE001 (re-raised by run_jobs)
            self.crashed = err
            return None

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.crashed is not None or self.source.finished:
            return Searcher.FINISHED
        job = self.guarded(self.source.next_job)
        if self.crashed is not None:
            return Searcher.FINISHED
        if job is None:
            # Waiting (a generation barrier, the last results) is only safe while trials of
            # ours are live: with none, Tune would poll suggest() for 10 minutes.
            if not self.live:
                if self.source.finished:
                    return Searcher.FINISHED
                raise RuntimeError("job source: waiting for results although no trial is running")
            return None
        self.live[trial_id] = job
        self.guarded(self.source.started, job)
        return job.params()

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        job = self.live.pop(trial_id, None)
        if job is None:
            return
        tune_trial = self.tune_trials.get(trial_id)
        failures = tune_trial.run_metadata.num_failures if tune_trial is not None else 0
        if job.members:  # a cohort: each member recorded as its own job
            if error:
                message = error_text(tune_trial) + f" (after {max(1, failures)} attempts)"
                outcomes = [Outcome(error=message, attempts=max(1, failures))] * len(job.members)
            elif result and "members" in result:
                outcomes = [Outcome.from_metrics(m, attempts=failures + 1)
                            for m in json.loads(result["members"])]
            else:  # interrupted before its report: still to do, as for a lone trial
                return
            for member, outcome in zip(job.members, outcomes):
                self.guarded(self.source.record, member, outcome)
            return
        if error:  # every attempt failed
            message = error_text(tune_trial) + f" (after {max(1, failures)} attempts)"
            self.guarded(self.source.record, job, Outcome(error=message, attempts=max(1, failures)))
        elif result and "approx_aulc" in result and result.get("final", True):
            self.guarded(self.source.record, job, Outcome.from_metrics(result, attempts=failures + 1))
        elif result and trial_id in self.stopped:  # stopped at a rung: its last report
            outcome = Outcome.from_metrics(result, attempts=failures + 1)
            self.guarded(self.source.record, job, dataclasses.replace(outcome, stopped=True))
        # else: ended before its last report, and not stopped by us (Tune interrupted):
        # still to do for the source, and a resume runs it again.

    def error_of(self, trial_id: str) -> tuple[Job | None, str]:
        return self.live.get(trial_id), error_text(self.tune_trials.get(trial_id))

    # Tune pickles the searcher into its experiment state; ours lives in the run folder.
    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text("{}")

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume with the command's --resume, not Tuner.restore")

    def __getstate__(self) -> dict:
        return {"metric": self.metric, "mode": self.mode}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, source=None, live={}, tune_trials={})


class RungScheduler(FIFOScheduler):
    """Tune's scheduler interface (called on each result), deciding with the source: a
    trial's report at a rung goes to ``source.at_checkpoint``, and a False stops it there.
    The rung records live in the source (the engine's state), not here, so a resumed
    search decides as the killed one would have."""

    def __init__(self, searcher: JobSearcher) -> None:
        super().__init__()
        self.searcher = searcher

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        job = self.searcher.live.get(trial.trial_id)
        if job is None or result.get("final", True):
            return TrialScheduler.CONTINUE
        keep = self.searcher.guarded(self.searcher.source.at_checkpoint, job,
                                     int(result["steps"]), float(result["approx_aulc"]))
        if keep or self.searcher.crashed is not None:
            return TrialScheduler.CONTINUE
        self.searcher.stopped.add(trial.trial_id)
        return TrialScheduler.STOP


class TrialEvents(tune.Callback):
    """Hands Tune's Trial objects to the searcher (for error files) and shows retries."""

    def __init__(self, searcher: JobSearcher) -> None:
        self.searcher = searcher

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.searcher.tune_trials[trial.trial_id] = trial

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.searcher.tune_trials[trial.trial_id] = trial
        job, message = self.searcher.error_of(trial.trial_id)
        if job is not None:
            self.searcher.guarded(self.searcher.source.retrying, job,
                                  trial.run_metadata.num_failures + 1, message)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.searcher = None


def error_text(tune_trial: Any) -> str:
    """One line from Tune's error file of a trial (its last failure)."""
    path = getattr(tune_trial, "error_file", None) if tune_trial is not None else None
    try:
        text = open(path).read() if path else ""
    except OSError:
        text = ""
    last = text.rsplit("Failure # ", 1)[-1]
    if any(s in last for s in ("ActorDiedError", "worker process has died", "actor died",
                               "NodeDiedError", "node died")):
        return "worker process died (killed, crashed or its node was lost)"
    lines = [line.strip() for line in last.splitlines()[1:] if line.strip()]
    return lines[-1][:300] if lines else "trial failed (no error message)"


def trial_dirname(trial: Any) -> str:
    """Short Tune trial names: the default puts the config (a genome with '/' and '>') in it."""
    return f"trial_{trial.trial_id}"


def make_trainable(dispatch: DispatchConfig, train_fn: TrainFn | None = None) -> Callable:
    """The Tune function trainable (cloudpickled to the workers)."""
    threads, use_gpu = dispatch.threads, dispatch.gpus_per_trial > 0

    def trial(params: dict) -> None:
        execute(params, threads=threads, use_gpu=use_gpu, train_fn=train_fn, report=tune.report)

    return trial


def run_jobs(source: JobSource, dispatch: DispatchConfig, storage: Path, *,
             train_fn: TrainFn | None = None, name: str | None = None) -> None:
    """Run the source's jobs on the Ray instance this process is connected to, until the
    source is finished or Tune stops (Ctrl-C: the run folder holds what a resume needs)."""
    limit = concurrency(dispatch)  # also refuses trials the cluster cannot hold
    cohorts = None
    if dispatch.members_per_trial > 1:
        source = cohorts = Cohorts(source, dispatch.members_per_trial)
    searcher = JobSearcher(source)
    if cohorts is not None:   # suggest() fills one of them; live trials hold the others
        cohorts.free_slots = lambda: limit - len(searcher.live)
    scheduler = RungScheduler(searcher)
    tuner = tune.Tuner(
        tune.with_resources(make_trainable(dispatch, train_fn), dispatch.resources),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=limit), num_samples=-1,
            reuse_actors=True, scheduler=scheduler, trial_name_creator=trial_dirname,
            trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=name or time.strftime("session-%Y%m%d-%H%M%S"),
            storage_path=str(storage), verbose=0,
            failure_config=tune.FailureConfig(max_failures=dispatch.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[TrialEvents(searcher)]),
    )
    tuner.fit()
    if searcher.crashed is not None:
        raise searcher.crashed
