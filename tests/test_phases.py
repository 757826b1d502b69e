"""Phases of one Tune run (search/runs/phases.py): the second source is made only when the
first is finished, and every job goes back to the source that handed it out."""
from rl.config import TrainConfig
from search.runs.jobs import Job, Outcome
from search.runs.phases import Phases

BASE = TrainConfig(domain_name="cartpole_swingup", num_train_steps=1000)


class Source:
    def __init__(self, name, keys, wait_for_all=False):
        self.name, self.queue, self.live, self.events = name, list(keys), set(), []
        self.wait_for_all = wait_for_all

    @property
    def finished(self):
        return not self.queue and not self.live

    def next_job(self):
        if not self.queue:
            return None
        key = self.queue.pop(0)
        self.live.add(key)
        return Job(key, BASE)

    def started(self, job):
        self.events.append(("started", job.key))

    def record(self, job, outcome):
        self.live.remove(job.key)
        self.events.append(("record", job.key))

    def retrying(self, job, attempt, error):
        self.events.append(("retrying", job.key))

    def at_checkpoint(self, job, env_step, aulc):
        self.events.append(("checkpoint", job.key))
        return False


def test_the_second_phase_is_made_when_the_first_is_finished_and_jobs_go_home():
    first, made = Source("selection", ["a", "b"]), []

    def then():
        made.append(True)
        return Source("verdict", ["v1"])

    phases = Phases(first, then)
    a, b = phases.next_job(), phases.next_job()
    assert phases.next_job() is None and not made and not phases.finished   # waiting for a, b
    phases.started(a)
    assert phases.at_checkpoint(a, 500, 1.0) is False
    phases.record(a, Outcome())
    assert phases.next_job() is None and not made                           # b still live
    phases.retrying(b, 2, "boom")
    phases.record(b, Outcome())
    v1 = phases.next_job()
    assert v1.key == "v1" and made == [True] and not phases.finished
    phases.started(v1)
    phases.record(v1, Outcome())
    assert phases.next_job() is None and phases.finished and made == [True]
    assert first.events == [("started", "a"), ("checkpoint", "a"), ("record", "a"),
                            ("retrying", "b"), ("record", "b")]
    assert phases._second.events == [("started", "v1"), ("record", "v1")]


def test_no_second_phase_finishes_after_the_first():
    phases = Phases(Source("selection", ["a"]), lambda: None)
    a = phases.next_job()
    phases.record(a, Outcome())
    assert not phases.finished                # not asked yet: the searcher asks next_job
    assert phases.next_job() is None and phases.finished
