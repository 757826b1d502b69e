"""How long the rest of a run takes: its schedule played forward on a simulated clock.

The start-up estimate and the status line's ETA both come from here. A :class:`Forecast`
takes, at each event (a trial started or finished), a copy of what is left to hand out (a
:class:`Plan`: the engine forked, with its generation barriers, rungs and finalist seeds,
then the verdict named from the fork's own records; or an evaluation's queue), and
:func:`play` runs it on ``slots`` simulated slots through the :class:`Cohorts` that hands
real trials out, each trial lasting what :class:`Durations` says and the trials out now
ending when their estimate says. Where a candidate may stop at a rung the play draws its
AULC at random, so the forecast is the median of several plays and their range says how
much the stops may change it.
"""
from __future__ import annotations

import dataclasses
import heapq
import random
import statistics
import threading
import time
from typing import Callable, Iterable, Protocol, Sequence

from rl.config import TrainConfig
from search.runs.cohorts import Cohorts
from search.runs.jobs import Job, Outcome

# A cohort of K seeds of one loss takes K lone runs' time x this (measured on the 2-core
# machine, cpu preset, 2 trials at once, 2026-12-02: cohorts of 2 finalist seeds 0.88,
# 0.90, 0.93 and 0.99 of two lone runs of their genome; the k9 winner's cohort of 5, 0.92).
COHORT_FACTOR = 0.92
# A run takes its probe's estimate (rl.probe, 2 probes at once) x this: the recorded lone
# runs of 4 cpu-preset genomes took 1.04, 1.11, 1.07 and 1.06 x their probes, measured
# side by side on the same host speed (update 16 ms), 2026-12-02; the probe times the
# update on a small replay and leaves out the run's logging and its growing buffer.
PROBE_FACTOR = 1.07


def cost_key(config: TrainConfig) -> str:
    """What a run's duration depends on (its seed does not)."""
    genome = str(config.genome) if config.agent == "auxi_sac" else "-"
    return "|".join(map(str, (config.task, config.agent, config.encoder_type,
                              config.from_pixels, genome, config.num_train_steps))) + "|"


class Durations:
    """Seconds a lone trial of a config takes on a slot beside the others: measured (its
    config's trials that finished in this session), else probed, else, for a genome not
    met yet, the mean of the known configs that are not ``references``. A cohort of K
    members takes K lone runs x the config's ``factors`` entry (probed), else COHORT_FACTOR."""

    def __init__(self, probed: dict[str, float] | None = None,
                 references: Iterable[str] = (),
                 factors: dict[str, float] | None = None) -> None:
        self.probed = dict(probed or {})
        self.references = set(references)
        self.factors = dict(factors or {})
        self.measured: dict[str, list[float]] = {}

    def factor(self, config: TrainConfig, members: int) -> float:
        """A cohort of ``members`` takes that many lone runs x this."""
        return self.factors.get(cost_key(config), COHORT_FACTOR) if members > 1 else 1.0

    def note(self, job: Job, wall_s: float, steps: int | None = None) -> None:
        """``job`` (a member of a trial of ``job.together``) took ``wall_s`` to ``steps``."""
        lone = wall_s / (job.together * self.factor(job.config, job.together))
        top = job.config.num_train_steps
        if steps and 0 < steps < top:   # stopped at a rung: as if it had gone on
            lone *= top / steps
        self.measured.setdefault(cost_key(job.config), []).append(lone)

    def _known(self, key: str) -> float | None:
        if key in self.measured:
            return statistics.fmean(self.measured[key])
        return self.probed.get(key)

    def lone(self, config: TrainConfig) -> float | None:
        known = self._known(cost_key(config))
        if known is not None:
            return known
        keys = set(self.measured) | set(self.probed)
        values = [self._known(k) for k in sorted(keys - self.references)]
        values = values or [self._known(k) for k in sorted(keys)]
        return statistics.fmean(values) if values else None

    def trial(self, jobs: Sequence[Job]) -> float | None:
        """A trial of ``jobs`` (one job, or a cohort's members)."""
        lone = self.lone(jobs[0].config)
        if lone is None:
            return None
        return lone * len(jobs) * self.factor(jobs[0].config, len(jobs))


class Source(Protocol):
    """A job source (search/runs/tuner.py's JobSource) as a play uses it."""

    finished: bool

    def next_job(self) -> Job | None: ...
    def record(self, job: Job, outcome: Outcome) -> None: ...
    def at_checkpoint(self, job: Job, env_step: int, aulc: float) -> bool: ...


class ListSource:
    """Fixed jobs, handed out in order (an evaluation's queue, a verdict's runs; the
    evaluation's :class:`~search.evaluation.session.EvalSession` records on top of it)."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._queue = list(jobs)
        self._live: dict[str, Job] = {}     # handed out, not recorded yet

    @property
    def finished(self) -> bool:
        return not self._queue and not self._live

    def next_job(self) -> Job | None:
        if not self._queue:
            return None
        job = self._queue.pop(0)
        self._live[job.key] = job
        return job

    def started(self, job: Job) -> None:
        pass

    def record(self, job: Job, outcome: Outcome) -> None:
        self._live.pop(job.key, None)

    def retrying(self, job: Job, attempt: int, error: str) -> None:
        pass

    def at_checkpoint(self, job: Job, env_step: int, aulc: float) -> bool:
        return True


@dataclasses.dataclass
class Clock:
    """A play's simulated time (seconds from its start); sources note in ``marks`` when
    things happen in it (the verdict's winners named: the selection's end)."""

    now: float = 0.0
    marks: dict[str, float] = dataclasses.field(default_factory=dict)


class Plan(Protocol):
    """What is left to hand out, captured at one moment; each call makes a fresh copy.
    A plan may also have ``draw(job, env_step, rng)``: the AULC a play gives ``job`` at
    ``env_step`` (by default a standard normal draw)."""

    def source(self, running: set[str], clock: Clock) -> Source:
        """The jobs not out now (``running``: the keys of those being trained) as a source."""


@dataclasses.dataclass(frozen=True)
class Play:
    seconds: float                   # until the plan is finished
    marks: dict[str, float]          # the clock's marks, e.g. "verdict": winners named


def play(plan: Plan, slots: int, durations: Durations, *, size: int = 1,
         running: Sequence[tuple[float, Sequence[Job]]] = (),
         rng: random.Random | None = None, trace: list | None = None) -> Play | None:
    """One play of ``plan`` on ``slots`` slots: seconds until it is finished. ``running``:
    trials out now, (seconds left, their jobs); ``size``: members a cohort may have;
    ``trace`` gets (seconds, "start" | "end" | "stop", job keys) as the play goes. None
    when a trial's duration is unknown (nothing probed or measured)."""
    rng = rng or random.Random(0)
    clock = Clock()
    draw = getattr(plan, "draw", None) or (lambda job, step, rng: rng.gauss(0.0, 1.0))
    base = plan.source({j.key for _, jobs in running for j in jobs}, clock)
    busy = [0]
    source = Cohorts(base, size, free_slots=lambda: slots - busy[0]) if size > 1 else base
    # a heap of (time, order, trial number, what, step, jobs); order breaks ties
    events: list[tuple[float, int, int, str, int, tuple[Job, ...]]] = []
    count = [0, 0]   # events pushed, trials out

    def push(at: float, trial: int, what: str, step: int, jobs: tuple[Job, ...]) -> None:
        count[0] += 1
        heapq.heappush(events, (at, count[0], trial, what, step, jobs))

    def out() -> int:
        busy[0] += 1
        count[1] += 1
        return count[1]

    for left, jobs in running:
        trial, job = out(), jobs[0]
        seconds = durations.trial(jobs)
        for rung in job.rungs if seconds is not None else ():   # the rungs still ahead of it
            at = left - seconds * (1 - rung / job.config.num_train_steps)
            if at > 0:
                push(at, trial, "rung", rung, (job,))
        push(max(0.0, left), trial, "end", 0, tuple(jobs))
    ended: set[int] = set()   # trial numbers
    while True:
        while busy[0] < slots:
            job = source.next_job()
            if job is None:
                break
            jobs = job.members or (job,)
            seconds = durations.trial(jobs)
            if seconds is None:
                return None
            trial = out()
            if trace is not None:
                trace.append((clock.now, "start", [j.key for j in jobs]))
            top = job.config.num_train_steps
            for rung in job.rungs:
                push(clock.now + seconds * rung / top, trial, "rung", rung, (job,))
            push(clock.now + seconds, trial, "end", top, tuple(jobs))
        if not events:
            break
        at, _, trial, what, step, jobs = heapq.heappop(events)
        if trial in ended:   # stopped at a rung before this event
            continue
        clock.now = at
        if what == "rung":
            aulc = draw(jobs[0], step, rng)
            if base.at_checkpoint(jobs[0], step, aulc):
                continue
            outcome = Outcome(approx_aulc=aulc, steps=step, stopped=True)
        else:
            top = jobs[0].config.num_train_steps
            outcome = Outcome(approx_aulc=draw(jobs[0], top, rng), steps=top)
        ended.add(trial)
        busy[0] -= 1
        if trace is not None:
            trace.append((at, "stop" if outcome.stopped else "end", [j.key for j in jobs]))
        for job in jobs:
            base.record(job, outcome)
    return Play(clock.now, dict(clock.marks))


class Forecast:
    """The ETA (the interface the display reads, as :class:`~search.runs.display.Eta`):
    at each trial started or finished, what is left is captured (``capture()``, in the
    driver's thread, where the sources change); the next read plays it forward ``plays``
    times (give 1 when nothing is drawn: no rungs) and counts the median down from there."""

    def __init__(self, capture: Callable[[], Plan], durations: Durations, slots: int = 1, *,
                 size: int = 1, plays: int = 9, seed: int = 0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.capture, self.durations = capture, durations
        self.slots, self.size, self.plays, self.seed, self.now = max(1, slots), size, plays, seed, now
        self._running: dict[str, tuple[float, Job]] = {}
        self._lock = threading.Lock()
        self._state: tuple[Plan, list[tuple[float, Job]], float] | None = None
        self._result: tuple[float, list[Play]] | None = None   # (when, plays)
        self.error: str | None = None   # why the last plays failed (the ETA then shows "?")
        self.refresh()

    # ------------------------------------------------------------ events (driver thread)
    def started(self, key: str, together: int = 1, job: Job | None = None) -> None:
        if job is not None:
            self._running[key] = (self.now(), job)
        self.refresh()

    def finished(self, key: str, steps: int | None = None) -> float | None:
        """Forget ``key``; its wall duration (noted for the estimates of its config)."""
        start, job = self._running.pop(key, (None, None))
        wall = None if start is None else self.now() - start
        if job is not None and wall is not None:
            self.durations.note(job, wall, steps)
        self.refresh()
        return wall

    def refresh(self) -> None:
        """Capture what is left now (the next read plays it)."""
        plan = self.capture()
        with self._lock:
            self._state = (plan, list(self._running.values()), self.now())
            self._result = None

    # ------------------------------------------------------------ reads (any thread)
    def outlook(self) -> list[Play]:
        """The plays of the last capture (computed once per capture)."""
        with self._lock:
            if self._result is None and self._state is not None:
                plan, running, at = self._state
                try:
                    self._result = (at, self._plays(plan, running, at))
                    self.error = None
                except Exception as err:  # noqa: BLE001 (an estimate must never stop a run)
                    self.error = f"{type(err).__name__}: {err}"
                    self._result = (at, [])
            return [] if self._result is None else self._result[1]

    def _plays(self, plan: Plan, running: list[tuple[float, Job]], at: float) -> list[Play]:
        trials: dict[str, tuple[float, list[Job]]] = {}
        for start, job in running:
            trials.setdefault(job.trial, (start, []))[1].append(job)
        out_now = []
        for start, jobs in trials.values():
            seconds = self.durations.trial(jobs)
            if seconds is None:
                return []
            out_now.append((seconds - (at - start), jobs))
        plays = []
        for i in range(self.plays):
            result = play(plan, self.slots, self.durations, size=self.size, running=out_now,
                          rng=random.Random(self.seed * 1000 + i))
            if result is None:
                return []
            plays.append(result)
        return plays

    def seconds_left(self, jobs_left: int = 0) -> float | None:
        plays = self.outlook()
        if not plays:
            return None
        with self._lock:
            at = self._result[0] if self._result else self.now()
        return max(0.0, statistics.median(p.seconds for p in plays) - (self.now() - at))
