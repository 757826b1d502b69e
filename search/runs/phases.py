"""Phases of one Tune run: the jobs of one source, then those of a second, made only when
the first is finished (a search's selection, then its verdict, whose winners are named once
every selection result is in).

One Tuner for both keeps Tune's actors (``reuse_actors``): the verdict's trials start on
the selection's warm workers instead of new ones that import torch and dm_control first.
Each job goes back to the source that handed it out.
"""
from __future__ import annotations

from typing import Any, Callable

from search.runs.jobs import Job, Outcome


class Phases:
    """A JobSource: ``first``'s jobs, then those of ``then()`` (called once, from
    ``next_job`` when ``first`` is finished; None: no second phase)."""

    def __init__(self, first: Any, then: Callable[[], Any]) -> None:
        self._first, self._then = first, then
        self._second: Any = None
        self._made = False
        self._owner: dict[str, Any] = {}   # job key -> the source that handed it out

    @property
    def finished(self) -> bool:
        if not self._made:
            return False   # next_job makes the second phase (or learns there is none)
        return self._first.finished and (self._second is None or self._second.finished)

    def next_job(self) -> Job | None:
        if not self._first.finished:
            source = self._first
        else:
            if not self._made:
                self._second, self._made = self._then(), True
            if self._second is None:
                return None
            source = self._second
        job = source.next_job()
        if job is not None:
            self._owner[job.key] = source
        return job

    def started(self, job: Job) -> None:
        self._owner[job.key].started(job)

    # A job it did not hand out (one a forecast's play found running, search/runs/forecast.py)
    # is the first phase's: a play passes its rungs and records its end.
    def record(self, job: Job, outcome: Outcome) -> None:
        self._owner.pop(job.key, self._first).record(job, outcome)

    def retrying(self, job: Job, attempt: int, error: str) -> None:
        self._owner[job.key].retrying(job, attempt, error)

    def at_checkpoint(self, job: Job, env_step: int, aulc: float) -> bool:
        return self._owner.get(job.key, self._first).at_checkpoint(job, env_step, aulc)
