"""Cohort trials (search/runs/cohorts.py): which jobs train together, and that the source
hears of each member as of its own job."""
from rl.config import TrainConfig
from search.runs.cohorts import Cohorts, cohort_of, joinable
from search.runs.jobs import Job

BASE = TrainConfig(domain_name="cartpole_swingup", num_train_steps=1000)
OTHER = BASE.replace(agent="pixel_sac")


class Source:
    def __init__(self, jobs):
        self.jobs, self.events = list(jobs), []

    @property
    def finished(self):
        return not self.jobs

    def next_job(self):
        return self.jobs.pop(0) if self.jobs else None

    def started(self, job):
        self.events.append(("started", job.key))

    def record(self, job, outcome):
        self.events.append(("record", job.key))

    def retrying(self, job, attempt, error):
        self.events.append(("retrying", job.key, attempt))

    def at_checkpoint(self, job, env_step, aulc):
        return True


def job(key, config=BASE, seed=1, rungs=()):
    return Job(key, config.replace(seed=seed), rungs=rungs)


def test_consecutive_seeds_of_one_config_join_up_to_the_size():
    source = Source([job("a1", seed=1), job("a2", seed=2), job("a3", seed=3), job("a4", seed=4),
                     job("b1", OTHER, seed=1), job("b2", OTHER, seed=2), job("c", seed=9, rungs=(500,))])
    cohorts = Cohorts(source, 3)
    handed = []
    while not cohorts.finished:
        handed.append(cohorts.next_job())
    assert [j.key for j in handed] == ["a1+a2+a3", "a4", "b1+b2", "c"]
    assert [m.config.seed for m in handed[0].members] == [1, 2, 3]
    assert handed[1].members == () and handed[3].rungs == (500,)   # alone: a plain job
    cohorts.started(handed[0])
    cohorts.retrying(handed[2], 2, "boom")
    assert source.events == [("started", "a1"), ("started", "a2"), ("started", "a3"),
                             ("retrying", "b1", 2), ("retrying", "b2", 2)]


def test_what_never_joins_a_cohort():
    assert joinable(job("a", seed=1), job("b", seed=2))
    assert not joinable(job("a", seed=1), job("b", seed=1))                   # same seed
    assert not joinable(job("a", seed=1), job("b", OTHER, seed=2))            # another config
    assert not joinable(job("a", seed=1), job("b", seed=2, rungs=(500,)))     # may be stopped
    assert not joinable(job("a", seed=1), Job("b", BASE.replace(seed=2), keep_files=True))


def test_a_cohort_job_travels_to_the_worker_and_back():
    cohort = cohort_of([job("a1", seed=1), job("a2", seed=2)])
    again = Job.from_params(cohort.params())
    assert again == cohort and [m.key for m in again.members] == ["a1", "a2"]
    assert [m.together for m in again.members] == [2, 2] and cohort.together == 1  # the ETA's share


def test_size_one_hands_out_the_sources_jobs_unchanged():
    jobs = [job("a1", seed=1), job("a2", seed=2)]
    cohorts = Cohorts(Source(jobs), 1)
    assert [cohorts.next_job(), cohorts.next_job()] == jobs


def test_a_job_held_back_for_a_cohort_counts_as_to_come_not_as_running(tmp_path):
    """The status line: "running" counts what Tune started; a finalist seed the cohort
    adapter took from the engine and holds back counts among the jobs still to come."""
    import io

    from search.commands.presets import build_setup
    from search.evolution.engine import ROW_COLUMNS, Engine
    from search.runs.display import Display
    from search.runs.folder import RunFolder
    from search.runs.session import SearchSession

    setup = build_setup("smoke")
    engine = Engine(setup.engine)
    folder = RunFolder.create(tmp_path / "run", setup.to_config(), engine.state_dict(),
                              engine.rows(), ROW_COLUMNS)
    session = SearchSession(engine, folder, Display(io.StringIO(), tty=False), base=setup.train)
    first, second = session.next_job(), session.next_job()
    session.started(first)
    snap = session.snapshot(force=True)
    assert engine.running() == 2 and snap.running == 1
    assert snap.jobs_left == engine.jobs_left() + 1     # the second is still to come


def test_the_last_jobs_are_split_over_free_slots_rather_than_queued_on_one():
    free = [2]
    cohorts = Cohorts(Source([job("a1", seed=1), job("a2", seed=2)]), 5, free_slots=lambda: free[0])
    first = cohorts.next_job()
    free[0] = 1   # the first took a slot
    second = cohorts.next_job()
    assert (first.key, second.key) == ("a1", "a2") and cohorts.finished
    # one slot free: the same jobs train as one cohort
    assert Cohorts(Source([job("a1", seed=1), job("a2", seed=2)]), 5,
                   free_slots=lambda: 1).next_job().key == "a1+a2"
    # three over two free slots: two together, then one
    cohorts = Cohorts(Source([job(f"a{i}", seed=i) for i in (1, 2, 3)]), 5, free_slots=lambda: 2)
    assert [cohorts.next_job().key, cohorts.next_job().key] == ["a1+a2", "a3"]


def test_a_cohort_with_work_behind_it_is_not_split():
    jobs = [job(f"a{i}", seed=i) for i in range(1, 6)] + [job("b1", OTHER, seed=1)]
    cohorts = Cohorts(Source(jobs), 5, free_slots=lambda: 2)
    assert [cohorts.next_job().key, cohorts.next_job().key] == ["a1+a2+a3+a4+a5", "b1"]
    free = [2]
    cohorts = Cohorts(Source([job(f"a{i}", seed=i) for i in range(1, 6)]), 5,
                      free_slots=lambda: free[0])
    first = cohorts.next_job().key
    free[0] = 1
    assert [first, cohorts.next_job().key] == ["a1+a2+a3", "a4+a5"]   # nothing behind: split
    jobs = [job("a1", seed=1), job("a2", seed=2), job("b1", OTHER, seed=1)]
    cohorts = Cohorts(Source(jobs), 5, free_slots=lambda: 2)
    assert [cohorts.next_job().key, cohorts.next_job().key] == ["a1+a2", "b1"]
