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

from typing import Sequence

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
    """A JobSource whose jobs are cohorts of up to ``size`` of ``source``'s jobs."""

    def __init__(self, source, size: int) -> None:
        self.source, self.size = source, max(1, int(size))
        self._held: Job | None = None   # taken from the source, not joinable: handed out next

    @property
    def finished(self) -> bool:
        return self._held is None and self.source.finished

    def next_job(self) -> Job | None:
        first, self._held = self._held or self.source.next_job(), None
        if first is None or self.size == 1 or first.rungs:
            return first
        members = [first]
        while len(members) < self.size:
            job = self.source.next_job()
            if job is None:
                break
            if not joinable(first, job) or any(job.config.seed == m.config.seed for m in members):
                self._held = job
                break
            members.append(job)
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
