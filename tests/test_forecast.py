"""The forecast (search/runs/forecast.py, search/commands/outlook.py): the schedule played
forward on a simulated clock, with barriers, cohorts, rungs and the verdict."""
import random

import pytest

from rl.config import TrainConfig
from search.commands.outlook import SearchPlan, probe_configs, probed_durations
from search.commands.presets import build_setup
from search.evolution.engine import Engine
from search.runs.forecast import COHORT_FACTOR, Durations, Forecast, cost_key, play
from search.runs.jobs import Job
from search.runs.session import trial_job

BASE = TrainConfig(domain_name="cartpole_swingup", num_train_steps=1000)


class Queue:
    """A plan of fixed jobs."""

    def __init__(self, jobs):
        self.jobs = jobs

    def source(self, running, clock):
        from search.runs.forecast import ListSource

        return ListSource(j for j in self.jobs if j.key not in running)


def seeds(n, config=BASE):
    return [Job(f"r{i}", config.replace(seed=i)) for i in range(1, n + 1)]


def durations(seconds, config=BASE):
    return Durations({cost_key(config): seconds})


def test_lone_runs_fill_the_slots_in_order():
    trace = []
    result = play(Queue(seeds(3)), 2, durations(10.0), trace=trace)
    assert result.seconds == 20.0
    assert [(t, what, keys) for t, what, keys in trace if what == "start"] == [
        (0.0, "start", ["r1"]), (0.0, "start", ["r2"]), (10.0, "start", ["r3"])]


def test_a_cohort_takes_its_members_lone_time_times_the_cohort_factor():
    result = play(Queue(seeds(5)), 1, durations(10.0), size=5)
    assert result.seconds == pytest.approx(5 * 10.0 * COHORT_FACTOR)
    # two free slots and nothing behind: 3 + 2 instead of 5 on one slot
    assert play(Queue(seeds(5)), 2, durations(10.0), size=5).seconds == pytest.approx(
        3 * 10.0 * COHORT_FACTOR)


def test_running_trials_end_when_their_estimate_says():
    running = [(4.0, seeds(1))]
    assert play(Queue(seeds(3)[1:]), 2, durations(10.0), running=running).seconds == 14.0


def test_a_running_candidate_may_still_stop_at_the_rungs_ahead_of_it():
    class Stopper(Queue):
        def source(self, running, clock):
            source = super().source(running, clock)
            source.at_checkpoint = lambda job, step, aulc: False   # stop at any rung
            return source

    job = Job("c", BASE.replace(seed=1), rungs=(500,))
    trace = []
    # 10 s a run, 8 s left: 2 s in, its rung at 5 s comes in 3 s
    result = play(Stopper([]), 2, durations(10.0), running=[(8.0, [job])], trace=trace)
    assert result.seconds == pytest.approx(3.0) and trace == [(pytest.approx(3.0), "stop", ["c"])]
    # past its rung (6 s in): it runs to the end
    assert play(Stopper([]), 2, durations(10.0), running=[(4.0, [job])]).seconds == 4.0


def test_unknown_durations_give_no_forecast():
    assert play(Queue(seeds(2)), 2, Durations()) is None


def test_durations_measured_beat_probed_and_a_new_genome_takes_the_candidates_mean():
    from spaces import Genome, named

    a2 = BASE.replace(genome=named("a2-winner"))
    cand = BASE.replace(genome=named("a2-winner-v"))
    sac = BASE.replace(agent="pixel_sac")
    d = Durations({cost_key(cand): 100.0, cost_key(a2): 60.0, cost_key(sac): 10.0},
                  references=[cost_key(sac)])
    d.note(Job("x", a2, together=2), 2 * 50.0 * COHORT_FACTOR)   # a cohort of 2: 50 s each
    assert d.lone(a2) == pytest.approx(50.0)
    d.note(Job("y", cand), 40.0, steps=500)                       # stopped half way
    assert d.lone(cand) == pytest.approx(80.0)
    other = BASE.replace(genome=Genome.parse("k4 s10001/a0001/r0000 > s00000/a0001/r1100 mse"))
    assert d.lone(other) == pytest.approx((80.0 + 50.0) / 2)      # the reference left out
    assert d.trial(seeds(2, sac)) == pytest.approx(2 * 10.0 * COHORT_FACTOR)


def test_references_are_probed_alone_and_as_their_verdict_cohort():
    """A reference's verdict seeds train as one cohort: its probe as that cohort gives its
    own factor (cheap models batch better than the candidates' COHORT_FACTOR)."""
    from rl.probe import StepTimes

    setup = build_setup("cpu")
    probes = probe_configs(setup, Engine(setup.engine))
    refs = {cost_key(c) for c, m in zip(probes.configs, probes.members) if m > 1}
    assert refs == set(probes.labels) and len(refs) == len(setup.verdict.references)
    assert set(probes.members) == {1, min(setup.verdict.seeds, setup.dispatch.members_per_trial)}
    lone = [c for c, m in zip(probes.configs, probes.members) if m == 1]
    assert {cost_key(c) for c in lone} >= refs              # each reference alone as well

    def times(config, members):   # a run: 100 s alone; a cohort of 5: 300 s (0.6 a member)
        run = config.agent_steps
        return StepTimes(0.0, 0.0, 0.0, (100.0 if members == 1 else 300.0) / run, 0)
    d = probed_durations(probes, [times(c, m) for c, m in zip(probes.configs, probes.members)])
    sac = next(c for c in lone if cost_key(c) in refs)
    cand = next(c for c in lone if cost_key(c) not in refs)
    assert d.factor(sac, 5) == pytest.approx(0.6) and d.factor(cand, 5) == COHORT_FACTOR
    assert d.lone(sac) == pytest.approx(times(sac, 1).run_seconds(sac) * 1.07)
    assert d.trial([Job(f"s{i}", sac) for i in range(5)]) == pytest.approx(3 * d.lone(sac))
    d.note(Job("s1", sac, together=5), 250.0)                # measured: 250 s for the cohort
    assert d.trial([Job(f"s{i}", sac) for i in range(5)]) == pytest.approx(250.0)


def test_a_cohort_probe_times_the_batched_update_of_its_members():
    """rl.probe with members: the real population update, act and every member's env step."""
    from rl.probe import probe
    from rl.train import prepare

    config = prepare(BASE.replace(agent="pixel_sac", encoder_type="identity", batch_size=32,
                                  hidden_dim=32, num_train_steps=2000), seed=0)
    lone, cohort = probe(config, seconds=0.3), probe(config, seconds=0.3, members=3)
    assert cohort.env_s > 1.5 * lone.env_s           # three envs step where one did
    assert cohort.update_s > 0 and cohort.run_seconds(config) > lone.run_seconds(config)
    with pytest.raises(ValueError, match="--seeds"):
        probe(config, members=0)


def test_a_copy_of_the_engine_keeps_running_trials_in_flight():
    setup = build_setup("smoke")
    engine = Engine(setup.engine)
    first, second = engine.ask(), engine.ask()
    copy = Engine.from_state_dict(engine.state_dict(), running={first.key})
    assert copy.ask().key == second.key             # handed out again: not started
    assert first.key in {t.key for t in copy.in_flight()}
    assert engine.running() == 2                    # the original is untouched


def smoke_play(budget=5, rungs=True, seed=0):
    engine_changes = {"budget": budget} if rungs else {"budget": budget, "rungs": ()}
    setup = build_setup("smoke", engine=engine_changes)
    engine = Engine(setup.engine)
    probes = probe_configs(setup, engine)
    d = Durations({cost_key(c): 100.0 for c in probes.configs}, probes.labels)
    trace = []
    result = play(SearchPlan(engine, setup), 2, d, size=5, rng=random.Random(seed), trace=trace)
    return setup, engine, result, trace


def test_a_search_plays_through_its_barriers_and_then_the_verdict():
    setup, engine, result, trace = smoke_play(rungs=False)
    ends = [t for t, what, keys in trace if what == "end" and "__" not in keys[0]]
    verdict = [(t, keys) for t, what, keys in trace if what == "start" and "__" in keys[0]]
    assert result.marks["verdict"] == max(ends)              # named when the selection ended
    assert min(t for t, _ in verdict) == result.marks["verdict"]
    assert sum(len(keys) for _, keys in verdict) == setup.verdict.runs
    # generation 1 starts only once generation 0 is complete, its finalist seeds included
    starts = [(t, keys) for t, what, keys in trace if what == "start" and "__" not in keys[0]]
    first_ids = [keys[0].split("-")[0] for _, keys in starts][:setup.engine.population]
    last_gen0_end = max(t for t, what, keys in trace if what == "end"
                        and keys[0].split("-")[0] in first_ids)
    later = [t for t, keys in starts if keys[0].split("-")[0] not in first_ids]
    assert later and min(later) >= last_gen0_end
    assert engine.trained == 0 and engine.running() == 0     # the real engine never moved


def test_with_rungs_the_plays_differ_by_which_candidates_stop():
    outcomes = {smoke_play(budget=8, seed=s)[2].seconds for s in range(8)}
    assert len(outcomes) > 1
    assert any(what == "stop" for s in range(8) for _, what, _ in smoke_play(budget=8, seed=s)[3])


def test_the_forecast_counts_down_from_its_last_capture_and_notes_durations():
    clock = [0.0]
    jobs = seeds(3)
    left = list(jobs)
    forecast = Forecast(lambda: Queue(list(left)), durations(10.0), 2, now=lambda: clock[0])
    assert forecast.seconds_left() == 20.0
    for job in jobs[:2]:
        left.remove(job)
        forecast.started(job.key, 1, job)
    clock[0] = 6.0
    assert forecast.seconds_left() == pytest.approx(14.0)    # 4 s left of both, then 10 s
    assert forecast.finished("r1") == 6.0                    # took 6 s: the estimate learns
    assert forecast.durations.lone(BASE) == pytest.approx(6.0)
    assert forecast.error is None


def test_a_search_plays_draw_results_on_the_scale_of_the_real_ones():
    setup = build_setup("smoke")
    engine = Engine(setup.engine)
    trial = engine.ask()
    engine.at_checkpoint(trial.key, setup.engine.rungs[0], 40.0)
    engine.tell(trial.key, 150.0, steps=setup.train.num_train_steps)
    plan = SearchPlan(engine, setup)
    rng = random.Random(0)
    job = Job("x", setup.train)
    assert plan.draw(job, setup.engine.rungs[0], rng) == 40.0                 # recorded there
    assert plan.draw(job, setup.train.num_train_steps, rng) == 150.0          # trained to the top
    assert plan.draw(job, setup.engine.rungs[1], rng) != 40.0                 # nothing yet: N(0, 1)


def test_a_search_play_asks_the_rungs_of_a_candidate_running_at_the_capture():
    """A candidate out when the forecast captures still passes its rungs in the play: the
    copy's phases ask its engine, though the copy never handed that job out."""
    setup = build_setup("smoke")
    engine = Engine(setup.engine)
    probes = probe_configs(setup, engine)
    d = Durations({cost_key(c): 100.0 for c in probes.configs}, probes.labels)
    job = trial_job(engine.ask(), setup.train, setup.engine.rungs)
    assert job.rungs   # rungs still ahead of it: the play asks at each
    forecast = Forecast(lambda: SearchPlan(engine, setup), d, 2, size=5, now=lambda: 0.0)
    forecast.started(job.key, 1, job)
    assert forecast.seconds_left() is not None and forecast.error is None
