"""Cohort trials: the seeds of one loss trained as one batched model in one trial
(``rl.cohort.train_cohort``, issue 14), for the runs that are never stopped at a rung: a
finalist's extra seeds, a verdict's seeds, ``evaluate.py``'s seeds of a loss.

:class:`Cohorts` wraps a :class:`~search.runs.tuner.JobSource` and hands Tune a cohort job
of up to ``size`` consecutive jobs of the source that differ only in their seed; each
member is still started, recorded and resumed as its own job (the source never sees the
cohort), so a run folder holds the same records either way and a resume trains, as a
smaller cohort, only the members not recorded. A crashed cohort is retried whole by Tune.
"""
from __future__ import annotations

from typing import Callable, Sequence

from search.runs.jobs import Job, Outcome


def cohort_of(jobs: Sequence[Job]) -> Job:
    """One job that trains ``jobs`` (same config but the seed, no rungs) as one cohort."""
    first = jobs[0]
    return Job("+".join(j.key for j in jobs), first.config, first.keep_files,
               members=tuple(jobs))


def joinable(first: Job, job: Job) -> bool:
    """Whether ``job`` may train in ``first``'s cohort: neither reports at rungs (a cohort
    is never stopped), the same files kept, the same config but the seed."""
    return (not first.rungs and not job.rungs and first.keep_files == job.keep_files
            and job.config.seed != first.config.seed
            and job.config.replace(seed=0) == first.config.replace(seed=0))


class Cohorts:
    """A JobSource whose jobs are cohorts of up to ``size`` of ``source``'s jobs.

    ``free_slots`` (the trials that could start now, this one included): when the source
    has nothing more to give now, the joinable jobs at hand are split over the free slots
    instead of queueing on one (on CPU a cohort of 2 takes ~0.93 of two lone runs one
    after the other, so two slots finish it in about half the time; a finalist cohort
    behind a generation barrier trained alone for 21 min beside an idle slot,
    bench/RESULTS.md)."""

    def __init__(self, source, size: int, free_slots: Callable[[], int] | None = None) -> None:
        self.source, self.size, self.free_slots = source, max(1, int(size)), free_slots
        self._held: list[Job] = []   # taken from the source, not handed out yet: next, in order

    @property
    def finished(self) -> bool:
        return not self._held and self.source.finished

    def _take(self) -> Job | None:
        return self._held.pop(0) if self._held else self.source.next_job()

    def next_job(self) -> Job | None:
        first = self._take()
        if first is None or self.size == 1 or first.rungs:
            return first
        members, more = [first], True
        while len(members) < self.size:
            job = self._take()
            if job is None:
                more = False
                break
            if not joinable(first, job) or any(job.config.seed == m.config.seed for m in members):
                self._held.insert(0, job)
                break
            members.append(job)
        if more and self.free_slots is not None and self.free_slots() > 1:
            job = self._take()   # a full cohort: is anything behind it?
            more = job is not None
            self._held[:0] = [job] if more else []
        if not more and self.free_slots is not None:
            share = -(-len(members) // max(1, self.free_slots()))   # ceil over the free slots
            self._held[:0], members = members[share:], members[:share]
        return first if len(members) == 1 else cohort_of(members)

    def started(self, job: Job) -> None:
        for member in job.members or (job,):
            self.source.started(member)

    def record(self, job: Job, outcome: Outcome) -> None:
        self.source.record(job, outcome)   # the searcher records members one by one

    def retrying(self, job: Job, attempt: int, error: str) -> None:
        for member in job.members or (job,):
            self.source.retrying(member, attempt, error)

    def at_checkpoint(self, job: Job, env_step: int, aulc: float) -> bool:
        return self.source.at_checkpoint(job, env_step, aulc)
