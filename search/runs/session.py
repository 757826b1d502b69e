"""One driver session of a search: the engine as a job source, and the one place where a
result is recorded: the curve, then ``engine.tell``, then the run folder (engine state
first), then the display. After a kill at any point a resume sees each trial either
recorded or still in flight (and runs it again), never recorded twice.

The same session drives the planted benchmark (:func:`run_planted`), in the driver,
without Ray.
"""
from __future__ import annotations

import math
import time
from typing import Any

from rl.config import TrainConfig
from search.evolution.engine import ROW_COLUMNS, Engine, Trial
from search.evolution.planted import PlantedFitness, evaluate
from search.runs.display import Display, Snapshot
from search.runs.folder import RunFolder
from search.runs.jobs import Job, Outcome, short_worker, worker_name
from spaces import Genome


def trial_job(trial: Trial, base: TrainConfig, rungs: tuple[int, ...]) -> Job:
    """The training run of an engine trial: a candidate's first seed reports at ``rungs``."""
    config = base.replace(genome=trial.candidate.genome, seed=trial.seed)
    return Job(trial.key, config, rungs=rungs if trial.kind == "candidate" else ())


def engine_snapshot(engine: Engine, jobs_after: int = 0, started: int | None = None) -> Snapshot:
    """The status of the search; ``jobs_after``: runs of a later phase (the verdict), so
    that jobs_left is 0 only when nothing is left; ``started``: the trials out on the cluster (by default all the
    engine handed out; a trial held back to be joined into a cohort counts as to come)."""
    rows = engine.rows()
    statuses = [row["status"] for row in rows]
    best = max((r for r in rows if r["status"] == "trained" and r["fitness"] is not None),
               key=lambda r: r["fitness"], default=None)
    best_text = "best -" if best is None else f"best {best['fitness']:.4g} ({best['genome']})"
    trained, failed, stopped = (statuses.count(s) for s in ("trained", "failed", "stopped"))
    rejected = statuses.count("rejected") + statuses.count("duplicate")
    extra = ((f"stopped {stopped}",) if engine.config.rungs else ()) + (f"rejected {rejected}", best_text)
    running = engine.running() if started is None else min(started, engine.running())
    return Snapshot(finished=trained + failed + stopped, total=engine.config.budget,
                    running=running, failed=failed,
                    jobs_left=engine.jobs_left() + engine.running() - running + jobs_after,
                    noun="candidates", extra=extra)


class SearchSession:
    """The engine as a :class:`~search.runs.tuner.JobSource`, with its run folder and display.

    ``min_interval_s``: the least time between two saves of the run folder and two status
    snapshots (each O(population)). 0 for training, where every result is saved as it
    comes; the planted driver, which tells thousands of results a second, uses a second
    (a kill then loses at most that second of cheap evaluations) and ends with
    :meth:`flush`. ``jobs_after``: the verdict's runs still to train (see engine_snapshot).
    """

    def __init__(self, engine: Engine, folder: RunFolder, display: Display,
                 base: TrainConfig | None = None, min_interval_s: float = 0.0,
                 jobs_after: int = 0) -> None:
        self.engine = engine
        self.jobs_after = jobs_after
        self.folder = folder
        self.display = display
        self.base = base
        self.min_interval_s = min_interval_s
        self.timings: list[dict[str, Any]] = []   # per finished job, for bench/search_overhead.py
        self._trials: dict[str, Trial] = {}
        self._started: set[str] = set()          # trials Tune has started, not recorded yet
        self._saved_at = self._snapshot_at = -math.inf
        self._snapshot: Snapshot | None = None
        self._unsaved = False

    # ------------------------------------------------------------ JobSource
    @property
    def finished(self) -> bool:
        return self.engine.finished

    def next_job(self) -> Job | None:
        trial = self.engine.ask()
        if trial is None:
            return None
        assert self.base is not None, "a training search needs the base TrainConfig"
        self._trials[trial.key] = trial
        return trial_job(trial, self.base, self.engine.config.rungs)

    def at_checkpoint(self, job: Job, env_step: int, aulc: float) -> bool:
        return self.engine.at_checkpoint(job.key, env_step, aulc)

    def started(self, job: Job) -> None:
        self._started.add(job.key)
        self.display.eta.started(job.key, job.together, job)
        self.display.update(self.snapshot(force=True), quiet=True)

    def record(self, job: Job, outcome: Outcome) -> None:
        self.record_trial(self._trials.pop(job.key), outcome)

    def retrying(self, job: Job, attempt: int, error: str) -> None:
        self.display.update(self.snapshot(force=True),
                            f"retrying {job.key} (attempt {attempt}): {error}", important=True)

    # ------------------------------------------------------------ recording
    def record_trial(self, trial: Trial, outcome: Outcome) -> None:
        """Curve, tell, save (engine state first), display: in this order."""
        self._started.discard(trial.key)
        if outcome.problem is None and outcome.curve:
            self.folder.put_curve(trial.candidate.id, trial.seed, outcome.curve)
        self.engine.tell(trial.key, outcome.fitness, final_return=outcome.final_return,
                         error=outcome.problem, wall_s=outcome.wall_s, worker=outcome.worker,
                         steps=outcome.steps, stopped_at=outcome.steps if outcome.stopped else None)
        self.save()
        driver_s = self.display.eta.finished(trial.key, outcome.steps)
        self.timings.append({"key": trial.key, "driver_s": driver_s, "train_s": outcome.train_s,
                             "wall_s": outcome.wall_s, "error": outcome.problem})
        c = trial.candidate
        where = f"gen {c.generation}, {c.operator}" + (f" of {';'.join(c.parents)}" if c.parents else "")
        if outcome.problem is None and outcome.stopped:
            event = (f"{c.id} seed {trial.seed}: stopped at {outcome.steps} env steps, AULC "
                     f"{outcome.fitness:.4g} there ({where}, {short_worker(outcome.worker)})")
        elif outcome.problem is None:
            event = (f"{c.id} seed {trial.seed}{' (finalist)' if trial.kind == 'finalist' else ''}: "
                     f"fitness {outcome.fitness:.4g} ({where}, {short_worker(outcome.worker)})")
        else:
            event = f"FAILED {c.id} seed {trial.seed}: {outcome.problem} ({where})"
        important = outcome.problem is not None
        before = self._snapshot_at
        snap = self.snapshot(force=important)
        if self.min_interval_s and self._snapshot_at == before and not important:
            # throttled (the planted benchmark): a line only with fresh counts, once a second
            self.display.update(snap, quiet=True)
        else:
            self.display.update(snap, event, important=important,
                                settle_s=0.0 if self.min_interval_s else 0.5)

    def save(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._saved_at < self.min_interval_s:
            self._unsaved = True
            return
        self.folder.save(self.engine.state_dict(), self.engine.rows(), ROW_COLUMNS)
        self._saved_at, self._unsaved = time.monotonic(), False

    def snapshot(self, force: bool = False) -> Snapshot:
        if force or self._snapshot is None or (
                time.monotonic() - self._snapshot_at >= self.min_interval_s):
            self._snapshot = engine_snapshot(self.engine, self.jobs_after, len(self._started))
            self._snapshot_at = time.monotonic()
        return self._snapshot

    def flush(self) -> None:
        """Save what a throttled :meth:`save` skipped; redraw the status from the engine."""
        if self._unsaved:
            self.save(force=True)
        self.display.update(self.snapshot(force=True), quiet=True)


def run_planted(session: SearchSession, target: Genome, noise: float = 0.0) -> None:
    """The search against a planted genome, in the driver, without Ray (seconds; give the
    session a ``min_interval_s``, or the saves make it quadratic in the budget).

    With ``noise`` (search/evolution/planted.py) candidates climb the engine's rungs and
    may stop there, as trained ones do; at 0 the fitness is exact and the rungs are
    skipped (a rung would only report the top's value): the benchmark as before noise."""
    engine = session.engine
    top = session.base.num_train_steps if session.base is not None else None
    fitness = PlantedFitness(target, noise, top_steps=top, density=engine.config.init_density)
    try:
        while not engine.finished:
            trial = engine.ask()
            if trial is None:
                raise RuntimeError("engine: nothing to ask although nothing is in flight")
            session.display.eta.started(trial.key)
            started = time.time()
            score, stopped_at = evaluate(engine, trial, fitness, rungs=noise > 0)
            steps = stopped_at if stopped_at is not None else (top if noise > 0 else 0)
            session.record_trial(trial, Outcome(approx_aulc=score, final_return=score,
                                                wall_s=time.time() - started,
                                                worker=worker_name(), steps=steps,
                                                stopped=stopped_at is not None))
    finally:  # also on Ctrl-C: the folder holds every result told so far
        session.flush()


def best_lines(rows: list[dict[str, Any]], top: int = 3) -> list[str]:
    """The best few trained genomes, for the end of a search."""
    trained = sorted((r for r in rows if r["status"] == "trained" and r["fitness"] is not None),
                     key=lambda r: -r["fitness"])
    return [f"  {i + 1}. {r['id']} fitness {r['fitness']:.4g}  {r['genome']}"
            for i, r in enumerate(trained[:top])]
