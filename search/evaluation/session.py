"""One driver session of an evaluation: the plan's unrecorded runs as a job source
(:class:`~search.runs.tuner.JobSource`), recording each into the run folder as it ends."""
from __future__ import annotations

from pathlib import Path

from search.evaluation.folder import FINAL, load_records, make_record, write_record, write_run_files
from search.evaluation.plan import Plan, RunSpec
from search.runs.display import Display, Snapshot
from search.runs.forecast import ListSource
from search.runs.jobs import Job, Outcome, short_worker


def handout_order(plan: Plan, runs: list[RunSpec], seeds_together: bool) -> list[RunSpec]:
    """``runs`` in the order an evaluation hands them out (see :class:`EvalSession`)."""
    if not seeds_together:
        return list(runs)
    order = {loss.label: i for i, loss in enumerate(plan.losses)}
    return sorted(runs, key=lambda r: (r.agent == "pixel_sac", order[r.loss],
                                       plan.tasks.index(r.task)))


def run_job(spec: RunSpec) -> Job:
    return Job(spec.key, spec.config, keep_files=True)


class EvalSession(ListSource):
    """Every run of ``plan`` that ``run_dir`` does not hold as done or diverged; with
    ``seeds_together`` (cohort trials) handed out loss by loss and task by task, the seeds
    of each in a row, in the plan's loss order but the losses with an auxiliary or CURL term
    first (they train longest: on 2 slots the last cohort to start should not be the
    longest), else in the plan's order (seed by seed)."""

    def __init__(self, plan: Plan, run_dir: Path, display: Display,
                 seeds_together: bool = False) -> None:
        self.plan, self.run_dir, self.display = plan, Path(run_dir), display
        self.records = load_records(run_dir)
        self.todo: list[RunSpec] = [r for r in plan.runs
                                    if self.records.get(r.key, {}).get("status") not in FINAL]
        self.recorded_before = len(plan.runs) - len(self.todo)
        self._specs = {r.key: r for r in self.todo}
        super().__init__(map(run_job, handout_order(plan, self.todo, seeds_together)))
        self._started: set[str] = set()

    # ------------------------------------------------------------ JobSource
    def left(self) -> list[Job]:
        """The runs not started yet, in order (taken and held for a cohort, then queued)."""
        held = [job for key, job in self._live.items() if key not in self._started]
        return held + list(self._queue)

    def started(self, job: Job) -> None:
        self._started.add(job.key)
        self.display.eta.started(job.key, job.together, job)
        self.display.update(self.snapshot(), quiet=True)

    def record(self, job: Job, outcome: Outcome) -> None:
        """Run files first, then the record (what makes the run count as done)."""
        spec = self._specs[job.key]
        super().record(job, outcome)
        self._started.discard(job.key)
        if outcome.files:
            write_run_files(self.run_dir, spec.key, dict(outcome.files))
        record = make_record(spec, outcome)
        write_record(self.run_dir, record)
        self.records[spec.key] = record
        self.display.eta.finished(job.key)
        if record["status"] == "done":
            event = (f"{spec.key}: AULC {record['approx_aulc']:.4g}, final return "
                     f"{record['final_return']:.4g} ({short_worker(outcome.worker)})")
        else:
            event = f"{spec.key}: {record['status']}: {record['failed']}"
        if outcome.dropped:
            event += f" (not shipped back, too large: {', '.join(outcome.dropped)})"
        self.display.update(self.snapshot(), event, important=record["status"] != "done",
                            settle_s=0.5)

    def retrying(self, job: Job, attempt: int, error: str) -> None:
        self.display.update(self.snapshot(), f"retrying {job.key} (attempt {attempt}): {error}",
                            important=True)

    # ------------------------------------------------------------ counts
    def snapshot(self) -> Snapshot:
        """Runs settled: recorded as done or diverged, or as error in this session (an error
        of an earlier session is run again, so it is not settled yet)."""
        pending = {job.key for job in self._queue} | set(self._live)
        statuses = [self.records[r.key]["status"] for r in self.plan.runs
                    if r.key in self.records and r.key not in pending]
        failed = sum(s != "done" for s in statuses)
        return Snapshot(finished=len(statuses), total=len(self.plan.runs),
                        running=len(self._live), failed=failed, jobs_left=len(self._queue),
                        noun="runs")
