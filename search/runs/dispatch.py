"""Dispatch: every trial of the engine is a Ray Tune trial that runs ``rl.train.train``.

The engine plugs into Tune as a :class:`ray.tune.search.Searcher` (wrapped in a
``ConcurrencyLimiter``); :class:`Session` is the one place where a result is recorded: the
curve, then ``engine.tell``, then the run folder (engine state first), then the display.
Tune's own experiment state is never read back: ``--resume`` starts a fresh Tuner whose
searcher is the engine restored from the run folder (its in-flight trials come back from
``ask()``), because Tune checkpoints its state only periodically.

A failed trial (an exception, a killed worker) is retried by Tune ``max_failures`` times
without the searcher hearing of it; after that the searcher gets ``error=True`` and the
genome is recorded as failed with the error, and the search goes on. A run that diverges
is not an error: train returns ``failed`` and the genome is recorded as failed, no retry.

Ray workers import torch and dm_control (through rl.train) only when a trial runs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from typing import Any, Callable, Mapping

from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from search.runs.cluster import ClusterError
from search.runs.display import Display, Snapshot
from search.evolution.engine import ROW_COLUMNS, Engine, Trial
from search.evolution.planted import planted_fitness
from search.commands.presets import DispatchConfig
from search.runs.folder import RunFolder
from spaces import Genome

TrainFn = Callable[..., Any]   # rl.train.train's signature; tests pass fakes


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------- outcomes
@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one trial produced, as the driver records it."""

    fitness: float | None
    final_return: float | None = None
    error: str | None = None
    curve: tuple[tuple[int, float], ...] = ()
    wall_s: float | None = None           # the whole trial, measured in the worker
    train_s: float | None = None          # TrainResult.train_s
    worker: str | None = None             # host:pid of the process that trained it
    steps: int | None = None

    @classmethod
    def from_metrics(cls, m: Mapping[str, Any]) -> "Outcome":
        """From the dict the trial reported (see :func:`trial_metrics`)."""
        error = m.get("failed") or None
        fitness = _float(m.get("fitness"))
        if fitness is None and error is None:
            error = f"no finite fitness reported ({m.get('fitness')!r})"
        return cls(fitness=None if error else fitness, final_return=_float(m.get("final_return")),
                   error=error, curve=tuple(tuple(p) for p in json.loads(m.get("curve") or "[]")),
                   wall_s=_float(m.get("wall_s")), train_s=_float(m.get("train_s")),
                   worker=m.get("worker"), steps=m.get("steps"))


def _float(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def trial_metrics(result: Any, started: float, steps: int) -> dict[str, Any]:
    """The metrics a trial reports to Tune: flat, JSON-friendly (the curve as a string)."""
    return {"fitness": float(result.approx_aulc), "final_return": float(result.final_return),
            "failed": result.failed or "", "curve": json.dumps([list(p) for p in result.curve]),
            "train_s": float(result.train_s), "wall_s": time.time() - started,
            "worker": worker_name(), "steps": int(steps)}


def run_trial(config: Mapping[str, Any], base: Any, threads: int, train_fn: TrainFn | None) -> None:
    """The body of one Tune trial, in a Ray worker: train one genome on one seed, report."""
    started = time.time()
    if train_fn is None:
        from rl.train import train as train_fn
    train_config = base.replace(genome=Genome.parse(config["genome"]))
    result = train_fn(train_config, None, threads=threads, seed=int(config["seed"]))
    tune.report(trial_metrics(result, started, base.num_train_steps))


def make_trainable(base: Any, threads: int, train_fn: TrainFn | None = None) -> Callable:
    """A Tune function trainable bound to the resolved base TrainConfig (cloudpickled)."""
    def candidate(config: dict) -> None:
        run_trial(config, base, threads, train_fn)
    return candidate


# ---------------------------------------------------------------- the session
class Session:
    """Driver-side bookkeeping of one search session, shared by the Tune and planted drivers.

    ``min_interval_s``: the least time between two saves of the run folder and two status
    snapshots (each O(population)). 0 for training, where every result is saved as it
    comes; the planted driver, which tells thousands of results a second, uses a second
    (a kill then loses at most that second of cheap evaluations) and ends with
    :meth:`flush`.
    """

    def __init__(self, engine: Engine, folder: RunFolder, display: Display,
                 min_interval_s: float = 0.0) -> None:
        self.engine = engine
        self.folder = folder
        self.display = display
        self.min_interval_s = min_interval_s
        self.timings: list[dict[str, Any]] = []   # per finished trial, for bench/search_overhead.py
        self._started: dict[str, float] = {}
        self._saved_at = self._snapshot_at = -math.inf
        self._snapshot: Snapshot | None = None
        self._unsaved = False

    def save(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._saved_at < self.min_interval_s:
            self._unsaved = True
            return
        self.folder.save(self.engine.state_dict(), self.engine.rows(), ROW_COLUMNS)
        self._saved_at, self._unsaved = time.monotonic(), False

    def snapshot(self, force: bool = False) -> Snapshot:
        if force or self._snapshot is None or (
                time.monotonic() - self._snapshot_at >= self.min_interval_s):
            self._snapshot, self._snapshot_at = Snapshot.of(self.engine), time.monotonic()
        return self._snapshot

    def flush(self) -> None:
        """Save what a throttled :meth:`save` skipped; redraw the status from the engine."""
        if self._unsaved:
            self.save(force=True)
        self.display.update(self.snapshot(force=True), quiet=True)

    def started(self, trial: Trial) -> None:
        self._started[trial.key] = time.monotonic()
        self.display.update(self.snapshot(), quiet=True)

    def record(self, trial: Trial, outcome: Outcome) -> None:
        """Curve, tell, save (engine state first), display: in this order, so that after a
        kill at any point a resume sees the trial either finished or still in flight."""
        if outcome.error is None and outcome.curve:
            self.folder.put_curve(trial.candidate.id, trial.seed, outcome.curve)
        self.engine.tell(trial.key, outcome.fitness, final_return=outcome.final_return,
                         error=outcome.error, wall_s=outcome.wall_s, worker=outcome.worker,
                         steps=outcome.steps)
        self.save()
        driver_s = time.monotonic() - self._started.pop(trial.key, time.monotonic())
        self.timings.append({"key": trial.key, "driver_s": driver_s, "train_s": outcome.train_s,
                             "wall_s": outcome.wall_s, "error": outcome.error})
        c = trial.candidate
        where = f"gen {c.generation}, {c.operator}" + (f" of {';'.join(c.parents)}" if c.parents else "")
        if outcome.error is None:
            event = f"{c.id} seed {trial.seed}: fitness {outcome.fitness:.4g} ({where}, {outcome.worker})"
        else:
            event = f"FAILED {c.id} seed {trial.seed}: {outcome.error} ({where})"
        self.display.update(self.snapshot(force=outcome.error is not None), event,
                            important=outcome.error is not None)

    def retrying(self, trial: Trial, attempt: int, error: str) -> None:
        self.display.update(self.snapshot(force=True),
                            f"retrying {trial.candidate.id} seed {trial.seed} "
                            f"(attempt {attempt + 1}): {error}", important=True)


# ---------------------------------------------------------------- planted fitness
def run_planted(session: Session, target: Genome) -> bool:
    """The search against a planted genome, in the driver, without Ray (seconds; give the
    session a ``min_interval_s``, or the saves make it quadratic in the budget)."""
    score = planted_fitness(target)
    engine = session.engine
    try:
        while not engine.finished:
            trial = engine.ask()
            if trial is None:
                raise RuntimeError("engine: nothing to ask although nothing is in flight")
            session.started(trial)
            started = time.time()
            fitness = float(score(trial.candidate.genome))
            session.record(trial, Outcome(fitness, final_return=fitness,
                                          wall_s=time.time() - started,
                                          worker=worker_name(), steps=0))
    finally:  # also on Ctrl-C: the folder holds every result told so far
        session.flush()
    return True


# ---------------------------------------------------------------- Ray Tune
class EngineSearcher(Searcher):
    """The engine as a Tune searcher: ``suggest`` = ``ask``, ``on_trial_complete`` = record."""

    def __init__(self, session: Session) -> None:
        super().__init__(metric="fitness", mode="max")
        self.session = session
        self.live: dict[str, Trial] = {}         # Tune trial id -> engine trial
        self.tune_trials: dict[str, Any] = {}    # Tune trial id -> Tune Trial (for its error file)

    def suggest(self, trial_id: str) -> dict | str | None:
        engine = self.session.engine
        if engine.finished:
            return Searcher.FINISHED
        trial = engine.ask()
        if trial is None:
            # Waiting (generation barrier, budget spent but results out) is only safe while
            # trials of ours are live: with none, Tune would poll suggest() for 10 minutes.
            if not self.live:
                raise RuntimeError("engine: waiting for results although no trial is running")
            return None
        self.live[trial_id] = trial
        self.session.started(trial)
        return {"key": trial.key, "genome": str(trial.candidate.genome), "seed": trial.seed,
                "kind": trial.kind}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        if error:
            tune_trial = self.tune_trials.get(trial_id)
            message = error_text(tune_trial)
            if tune_trial is not None:  # every attempt failed: num_failures = retries + 1
                message += f" (after {tune_trial.run_metadata.num_failures} attempts)"
            self.session.record(trial, Outcome(None, error=message))
        elif result and "fitness" in result:
            self.session.record(trial, Outcome.from_metrics(result))
        # else: stopped before it reported (Tune interrupted): the engine keeps it in
        # flight, and a resume runs it again.

    def error_of(self, trial_id: str) -> tuple[Trial | None, str]:
        return self.live.get(trial_id), error_text(self.tune_trials.get(trial_id))

    # Tune pickles the searcher into its experiment state; ours lives in the run folder.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump(self.session.engine.state_dict(), f)

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume with python search.py --resume RUN, not Tuner.restore")

    def __getstate__(self) -> dict:
        return {"metric": self.metric, "mode": self.mode}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, session=None, live={}, tune_trials={})


class TrialEvents(tune.Callback):
    """Hands Tune's Trial objects to the searcher (for error files) and shows retries."""

    def __init__(self, searcher: EngineSearcher) -> None:
        self.searcher = searcher

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.searcher.tune_trials[trial.trial_id] = trial

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.searcher.tune_trials[trial.trial_id] = trial
        ours, message = self.searcher.error_of(trial.trial_id)
        if ours is not None:
            self.searcher.session.retrying(ours, trial.run_metadata.num_failures, message)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.searcher = None


def error_text(tune_trial: Any) -> str:
    """One line for the population table from Tune's error file of a trial (its last failure)."""
    path = getattr(tune_trial, "error_file", None) if tune_trial is not None else None
    try:
        text = open(path).read() if path else ""
    except OSError:
        text = ""
    last = text.rsplit("Failure # ", 1)[-1]
    if "ActorDiedError" in last or "worker process has died" in last or "actor died" in last:
        return "worker process died (killed or crashed)"
    lines = [line.strip() for line in last.splitlines()[1:] if line.strip()]
    return lines[-1][:300] if lines else "trial failed (no error message)"


def trial_dirname(trial: Any) -> str:
    """Short Tune trial names: the default puts the config (a genome with '/' and '>') in it."""
    return f"candidate_{trial.trial_id}"


def run_tune(session: Session, base: Any, dispatch: DispatchConfig, *,
             train_fn: TrainFn | None = None, name: str | None = None) -> bool:
    """Run the engine's trials on the Ray instance this process is connected to.

    Returns True when the engine finished (budget trained, nothing in flight), False when
    Tune stopped early (e.g. Ctrl-C): the run folder then holds what a resume needs.
    """
    slots = concurrency(dispatch)  # also refuses candidates the cluster cannot hold
    limit = dispatch.max_concurrent or slots
    searcher = EngineSearcher(session)
    tuner = tune.Tuner(
        tune.with_resources(make_trainable(base, dispatch.threads, train_fn),
                            {"cpu": dispatch.cpus_per_candidate, "gpu": dispatch.gpus_per_candidate}),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=limit), num_samples=-1,
            reuse_actors=True, trial_name_creator=trial_dirname,
            trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=name or time.strftime("session-%Y%m%d-%H%M%S"),
            storage_path=str(session.folder.tune_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=dispatch.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[TrialEvents(searcher)]),
    )
    tuner.fit()
    return session.engine.finished


def concurrency(dispatch: DispatchConfig) -> int:
    """How many candidates the connected cluster holds at once; ClusterError if none fits."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    if dispatch.cpus_per_candidate > cpus:
        raise ClusterError(f"--cpus_per_candidate: {dispatch.cpus_per_candidate} is more than the "
                         f"{cpus:g} CPUs of the Ray cluster")
    slots = int(cpus // dispatch.cpus_per_candidate + 1e-9)
    if dispatch.gpus_per_candidate > 0:
        if dispatch.gpus_per_candidate > gpus:
            raise ClusterError(f"--gpus_per_candidate: {dispatch.gpus_per_candidate} but the Ray "
                             f"cluster has {gpus:g} GPUs")
        slots = min(slots, int(gpus // dispatch.gpus_per_candidate + 1e-9))
    return max(1, slots)
