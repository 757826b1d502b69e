"""Contract tests of the evolution engine, driven by the planted fitness (no Ray, no torch)."""
import collections
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from spaces import MAX_HORIZON, MIN_HORIZON, Genome, named, reject_reason, similarity
from search.evolution.engine import ROW_COLUMNS, Engine, EngineConfig
from search.evolution.operators import OPERATORS
from search.evolution.planted import drive, evaluations_to_find, parse_planted, planted_fitness, run_planted

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = named("a2-winner")
FITNESS = planted_fitness(TARGET)
STRATEGIES = ("generational", "steady", "random")
TRAINED = ("trained", "failed")


def only(operator: str, **changes) -> EngineConfig:
    """A config whose children all come from one operator."""
    rates = {f"p_{name}": float(name == operator) for name in OPERATORS}
    return EngineConfig(**(rates | changes))


def run_recording(engine: Engine, workers: int = 3, fitness=FITNESS):
    """drive() that also keeps every trial asked for, in order."""
    asked, out = [], collections.deque()
    while not engine.finished:
        while len(out) < workers and (trial := engine.ask()) is not None:
            asked.append(trial)
            out.append(trial)
        trial = out.popleft()
        engine.tell(trial.key, fitness(trial.candidate.genome))
    return asked


# ---------------------------------------------------------------- contract over operators x strategies
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("operator", OPERATORS)
def test_contract(strategy, operator):
    config = only(operator, strategy=strategy, population=8, budget=40, seeds_per_candidate=2, seed=3)
    engine = Engine(config)
    asked = run_recording(engine)
    rows = engine.rows()
    trained = [r for r in rows if r["status"] in TRAINED]
    assert len(trained) == config.budget == engine.progress()["trained"]
    assert len({r["id"] for r in trained}) == config.budget                 # nobody trained twice
    assert len({t.key for t in asked}) == len(asked) == 2 * config.budget   # every key once, 2 seeds each
    for trial in asked:
        genome = trial.candidate.genome
        assert Genome.parse(str(genome)) == genome == genome.canonical()
        assert MIN_HORIZON <= genome.horizon <= MAX_HORIZON
        assert reject_reason(genome) is None
    rejected = {r["id"] for r in rows if r["status"] == "rejected"}
    assert rejected.isdisjoint(t.candidate.id for t in asked)
    assert all(r["reject_reason"] for r in rows if r["status"] == "rejected")
    born = {}
    for row in rows:
        assert list(row) == list(ROW_COLUMNS)
        parents = row["parents"].split(";") if row["parents"] else []
        assert all(p in born for p in parents)                              # parents trained earlier
        if row["operator"] in ("random", "seed", "fresh", "fallback"):
            assert parents == []
        else:
            assert row["operator"] == operator and len(parents) == (2 if operator == "crossover" else 1)
        if row["status"] == "duplicate":
            assert row["id"] in born and row["fitness"] == born[row["id"]]["fitness"]
        if row["status"] in TRAINED:
            born[row["id"]] = row
            assert row["fitness"] == pytest.approx(similarity(Genome.parse(row["genome"]), TARGET))
    if strategy == "random":
        assert {r["operator"] for r in rows} == {"random"}


def test_fallback_escapes_an_exhausted_neighbourhood():
    # Metric changes alone reach 9 variants of each survivor: duplicates pile up.
    engine = Engine(only("metric", population=4, budget=40, max_attempts=5, seed=1))
    run_recording(engine, workers=1)
    rows = engine.rows()
    assert "fallback" in {r["operator"] for r in rows}
    assert sum(r["status"] in TRAINED for r in rows) == 40


# ---------------------------------------------------------------- strategies
def test_generational_barrier_and_survivors():
    engine = Engine(EngineConfig(population=4, budget=10, seed=0))
    first = [engine.ask() for _ in range(4)]
    assert all(t is not None and t.candidate.generation == 0 for t in first)
    assert engine.ask() is None
    for trial in first[:3]:
        engine.tell(trial.key, FITNESS(trial.candidate.genome))
    assert engine.ask() is None                      # one result still out
    engine.tell(first[3].key, FITNESS(first[3].candidate.genome))
    best = max(first, key=lambda t: FITNESS(t.candidate.genome)).candidate.id
    children = [engine.ask() for _ in range(3)]      # population 4, one survivor (25%)
    assert engine.ask() is None
    for child in children:
        assert child.candidate.generation == 1
        assert set(child.candidate.parents) <= {best}


def test_generational_generation_sizes():
    rows = run_planted(EngineConfig(population=20, budget=100, seed=2), TARGET)
    sizes = collections.Counter(r["generation"] for r in rows if r["status"] in TRAINED)
    assert [sizes[g] for g in sorted(sizes)] == [20, 15, 15, 15, 15, 15, 5]


def test_steady_waits_for_a_first_result_then_uses_tournaments():
    engine = Engine(EngineConfig(strategy="steady", population=5, budget=30, tournament=2, seed=4))
    initial = [engine.ask() for _ in range(5)]
    assert engine.ask() is None                      # nothing evaluated to select from
    engine.tell(initial[0].key, 0.5)
    child = engine.ask()
    assert child.candidate.operator not in ("random", "seed")
    assert set(child.candidate.parents) <= {initial[0].candidate.id}


def test_steady_generation_is_birth_order_over_population():
    rows = run_planted(EngineConfig(strategy="steady", population=10, budget=55, seed=5), TARGET,
                       workers=4)
    trained = [r for r in rows if r["status"] in TRAINED]
    assert [r["generation"] for r in trained] == [i // 10 for i in range(55)]


def test_steady_population_ages_out_the_oldest():
    engine = Engine(EngineConfig(strategy="steady", population=5, budget=30, seed=6))
    drive(engine, FITNESS, workers=1)
    trained = [r["id"] for r in engine.rows() if r["status"] in TRAINED]
    assert engine.state_dict()["strategy"]["alive"] == trained[-5:]


def test_seed_losses_come_first():
    rows = run_planted(EngineConfig(population=6, budget=6, seed_losses=("curl-like", "a2-winner")), TARGET)
    assert [(r["operator"], r["genome"]) for r in rows[:2]] == [
        ("seed", str(named("curl-like"))), ("seed", str(TARGET))]
    assert rows[1]["fitness"] == 1.0


def test_generational_planted_run_improves():
    rows = run_planted(EngineConfig(population=30, budget=300, seed=7), TARGET)
    by_gen = collections.defaultdict(list)
    for row in rows:
        if row["status"] in TRAINED:
            by_gen[row["generation"]].append(row["fitness"])
    first, last = by_gen[min(by_gen)], by_gen[max(by_gen)]
    assert max(last) > max(first)
    assert sum(last) / len(last) > sum(first) / len(first) + 0.05


# ---------------------------------------------------------------- fitness over seeds, elites
def test_fitness_is_mean_over_seeds_and_failures():
    engine = Engine(EngineConfig(population=4, budget=4, seeds_per_candidate=3, seed=8))
    trials = [engine.ask() for _ in range(12)]
    assert engine.ask() is None
    by_genome = collections.defaultdict(list)
    for trial in trials:
        by_genome[trial.candidate.id].append(trial)
    assert all(len({t.seed for t in ts}) == 3 for ts in by_genome.values())
    (a, b, c, d) = by_genome.values()
    for trial, score in zip(a, (1.0, 2.0, 6.0)):
        engine.tell(trial.key, score, final_return=10 * score, worker="w1", wall_s=1.0, steps=500)
    engine.tell(b[0].key, 4.0)
    engine.tell(b[1].key, None, error="diverged: nan")
    engine.tell(b[2].key, math.nan)
    for trial in c:
        engine.tell(trial.key, None, error="boom")
    for trial in d[:2]:
        engine.tell(trial.key, 1.0)
    rows = {r["id"]: r for r in engine.rows()}
    ra, rb, rc, rd = (rows[ts[0].candidate.id] for ts in (a, b, c, d))
    assert (ra["status"], ra["fitness"], ra["final_return"]) == ("trained", 3.0, 30.0)
    assert (ra["worker"], ra["wall_s"], ra["steps"]) == ("w1", 3.0, 500)
    assert ra["seeds"] == ";".join(str(t.seed) for t in a)
    assert (rb["status"], rb["fitness"]) == ("trained", 4.0)
    assert "diverged: nan" in rb["error"] and "non-finite" in rb["error"]
    assert (rc["status"], rc["fitness"]) == ("failed", None) and "boom" in rc["error"]
    assert rd["status"] == "running" and not engine.finished
    engine.tell(d[2].key, 1.0)
    assert engine.finished and engine.ask() is None


def test_finalists_get_more_seeds_and_count_for_selection_only_when_told():
    config = EngineConfig(population=4, budget=8, finalist_seeds=2, seed=9)
    engine = Engine(config)
    asked = run_recording(engine, workers=2, fitness=FITNESS)
    by_genome = collections.defaultdict(list)
    for trial in asked:
        by_genome[trial.candidate.id].append(trial)
    assert len(by_genome) == 8
    for trials in by_genome.values():  # one candidate seed, then two finalist seeds, all fresh
        assert [t.kind for t in trials] == ["candidate", "finalist", "finalist"]
        assert len({t.seed for t in trials}) == 3 and not any(t.stoppable for t in trials)
    # the second generation was born only once every seed of the first was told
    first_child = next(i for i, t in enumerate(asked) if t.candidate.generation == 1)
    first_gen_seeds = [i for i, t in enumerate(asked) if t.candidate.generation == 0]
    assert max(first_gen_seeds) < first_child
    row = next(r for r in engine.rows() if r["status"] == "trained")
    scores = [FITNESS(by_genome[row["id"]][0].candidate.genome)] * 3
    assert row["fitness"] == pytest.approx(scores[0]) and row["fitness_se"] == pytest.approx(0.0)


def test_jobs_left_counts_each_trial_once_finalist_seeds_included():
    """The ETA's count: without rungs every genome reaches the top, so 8 genomes x (1 + 2
    finalist seeds) = 24 trials, one less for each handed out or told, whether the
    candidate is still in flight or its finalist seeds are queued."""
    engine = Engine(EngineConfig(population=4, budget=8, finalist_seeds=2, seed=9))
    assert engine.jobs_left() == 24
    first, second = engine.ask(), engine.ask()
    assert engine.jobs_left() == 22
    engine.tell(first.key, 1.0)
    assert engine.jobs_left() == 22       # its two finalist seeds are queued now
    engine.ask()
    assert engine.jobs_left() == 21


def test_a_finalist_is_not_complete_until_its_seeds_are_told_and_its_fitness_is_their_mean():
    engine = Engine(EngineConfig(population=2, budget=2, finalist_seeds=2, seed=1))
    first, second = engine.ask(), engine.ask()
    assert engine.ask() is None                        # the barrier: nothing more to give
    engine.tell(first.key, 3.0)
    extra = [engine.ask(), engine.ask()]               # handed out before anything else
    assert [t.kind for t in extra] == ["finalist", "finalist"]
    assert all(t.candidate.id == first.candidate.id for t in extra)
    rows = {r["id"]: r for r in engine.rows()}
    assert rows[first.candidate.id]["status"] == "running"
    engine.tell(extra[0].key, 5.0)
    engine.tell(extra[1].key, 7.0)
    row = {r["id"]: r for r in engine.rows()}[first.candidate.id]
    assert (row["status"], row["fitness"]) == ("trained", 5.0)
    assert row["fitness_se"] == pytest.approx(2.0 / math.sqrt(3))   # std 2, n 3
    engine.tell(second.key, None, error="diverged")    # a failed candidate gets no finalists
    assert engine.ask() is None and engine.finished


def rung_engine(**changes) -> Engine:
    return Engine(EngineConfig(**{"population": 3, "budget": 9, "rungs": (50, 70),
                                  "reduction": 3, "finalist_seeds": 2, "seed": 4, **changes}))


def test_rungs_stop_only_candidates_after_the_first_generation_and_rank_by_rung():
    engine = rung_engine()
    first = [engine.ask() for _ in range(3)]
    assert not any(t.stoppable for t in first)           # the first generation trains to the top
    for t, aulc in zip(first, (10.0, 20.0, 30.0)):
        for step in (50, 70):
            assert engine.at_checkpoint(t.key, step, aulc)   # recorded, never stopped
        engine.tell(t.key, aulc, steps=100)
    assert sorted(engine.rung_values[50].values()) == [10.0, 20.0, 30.0]
    for t in first:  # their finalist seeds: never stopped, not recorded at rungs
        for extra in (engine.ask(), engine.ask()):
            assert extra.kind == "finalist" and not extra.stoppable
            assert engine.at_checkpoint(extra.key, 50, -100.0)
            engine.tell(extra.key, 15.0, steps=100)
    assert len(engine.rung_values[50]) == 3
    children = [engine.ask() for _ in range(2)]
    assert all(c.stoppable and c.candidate.generation == 1 for c in children)
    low, high = children
    # cutoff at 50: the 2/3 quantile of {10, 20, 30, aulc}
    assert not engine.at_checkpoint(low.key, 50, 5.0)
    engine.tell(low.key, 5.0, steps=50, stopped_at=50)
    assert engine.at_checkpoint(high.key, 50, 40.0) and not engine.at_checkpoint(high.key, 70, 1.0)
    engine.tell(high.key, 1.0, steps=70, stopped_at=70)
    rows = {r["id"]: r for r in engine.rows()}
    assert (rows[low.candidate.id]["status"], rows[low.candidate.id]["stopped_at"]) == ("stopped", 50)
    assert (rows[high.candidate.id]["status"], rows[high.candidate.id]["fitness"]) == ("stopped", 1.0)
    order = sorted(engine.records(), key=lambda r: r.order)
    # every finalist before the one stopped at 70 (despite its lower fitness) before 50
    assert [r.candidate.id for r in order[-2:]] == [high.candidate.id, low.candidate.id]
    fresh = rung_engine()
    candidate = fresh.ask()
    with pytest.raises(ValueError, match="may not be stopped"):  # the first generation
        fresh.tell(candidate.key, 1.0, stopped_at=50)


def test_rung_records_survive_a_restore_and_decide_the_same():
    engine = rung_engine()
    for t, aulc in zip([engine.ask() for _ in range(3)], (10.0, 20.0, 30.0)):
        engine.at_checkpoint(t.key, 50, aulc)
        engine.tell(t.key, aulc, steps=100)
    while (t := engine.ask()) is not None and t.kind == "finalist":
        engine.tell(t.key, 1.0)
    child = t
    assert child.stoppable
    restored = Engine.from_state_dict(json.loads(json.dumps(engine.state_dict())))
    assert restored.rung_values == engine.rung_values
    again = restored.ask()
    assert again.key == child.key                           # in flight: handed out again
    for aulc in (12.0, 25.0):
        assert restored.at_checkpoint(again.key, 50, aulc) == engine.at_checkpoint(child.key, 50, aulc)


def test_config_of_before_the_rungs_reads_and_elite_reruns_are_refused():
    old = {"strategy": "generational", "population": 4, "budget": 6, "seeds_per_candidate": 1,
           "elite_reevals": 0, "seed_losses": []}
    assert EngineConfig.from_dict(old) == EngineConfig(population=4, budget=6)
    with pytest.raises(ValueError, match="elite_reevals"):
        EngineConfig.from_dict({**old, "elite_reevals": 2})
    with pytest.raises(ValueError, match="seeds_per_candidate"):
        EngineConfig(rungs=(50,), seeds_per_candidate=2)
    with pytest.raises(ValueError, match="rungs"):
        EngineConfig(rungs=(70, 50))


# ---------------------------------------------------------------- determinism and state
SCRIPT = """
import json, sys
from search.evolution.engine import EngineConfig
from search.evolution.planted import parse_planted, run_planted
rows = run_planted(EngineConfig(strategy=sys.argv[1], population=10, budget=60, seed=11,
                                seeds_per_candidate=2), parse_planted("planted:a2-winner"), workers=3)
print(json.dumps(rows))
"""


@pytest.mark.parametrize("strategy", ("generational", "steady"))
def test_same_seed_same_population_across_processes(strategy):
    outputs = []
    for hash_seed in ("1", "2"):  # set iteration order differs between these processes
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED=hash_seed)
        proc = subprocess.run([sys.executable, "-c", SCRIPT, strategy], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        outputs.append(json.loads(proc.stdout))
    here = run_planted(EngineConfig(strategy=strategy, population=10, budget=60, seed=11,
                                    seeds_per_candidate=2), TARGET, workers=3)
    assert outputs[0] == outputs[1] == json.loads(json.dumps(here))
    other = run_planted(EngineConfig(strategy=strategy, population=10, budget=60, seed=12,
                                     seeds_per_candidate=2), TARGET, workers=3)
    assert other != here


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("stop_after", (1, 37, 90))
def test_restore_mid_run_continues_identically(strategy, stop_after):
    config = EngineConfig(strategy=strategy, population=10, budget=50, finalist_seeds=2, seed=13)
    whole = Engine(config)
    drive(whole, FITNESS, workers=3)

    first = Engine(config)
    drive(first, FITNESS, workers=3, max_tells=stop_after)
    flying = [t.key for t in first.in_flight()]
    assert flying and not first.finished
    restored = Engine.from_state_dict(json.loads(json.dumps(first.state_dict())))
    assert [restored.ask().key for _ in flying] == flying      # in-flight trials come back first
    assert [t.key for t in restored.in_flight()] == flying
    again = Engine.from_state_dict(json.loads(json.dumps(first.state_dict())))
    drive(again, FITNESS, workers=3)
    assert again.finished
    assert again.rows() == whole.rows()
    assert json.dumps(again.state_dict()) == json.dumps(whole.state_dict())


# ---------------------------------------------------------------- planted parsing and input errors
def test_parse_planted():
    assert parse_planted("planted:a2-winner") == TARGET
    assert parse_planted("planted:" + str(named("spr-like"))) == named("spr-like")
    for bad in ("a2-winner", "planted:nope", "planted:k2 s1/a/r > s1/a/r mse"):
        with pytest.raises(ValueError) as err:
            parse_planted(bad)
        assert "\n" not in str(err.value) and "fitness" in str(err.value)


def test_planted_fitness_is_spaces_similarity():
    for name in ("curl-like", "a2-winner-v", "forward-dynamics"):
        assert FITNESS(named(name)) == similarity(named(name), TARGET)
    assert FITNESS(TARGET) == 1.0
    rows = run_planted(EngineConfig(seed_losses=("a2-winner",), budget=3), TARGET)
    assert evaluations_to_find(rows) == 1
    assert planted_fitness(TARGET)(TARGET) == 1.0


@pytest.mark.parametrize("changes, field", [
    ({"strategy": "annealing"}, "strategy"), ({"population": 1}, "population"),
    ({"budget": 0}, "budget"), ({"seeds_per_candidate": 0}, "seeds_per_candidate"),
    ({"survivor_fraction": 1.0}, "survivor_fraction"), ({"p_bitflip": -1.0}, "rates"),
    ({"seed_losses": ("a3-winner",)}, "a3-winner"), ({"tournament": 0}, "tournament")])
def test_config_rejects_bad_values_in_one_line(changes, field):
    with pytest.raises(ValueError) as err:
        EngineConfig(**changes)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_tell_unknown_key():
    engine = Engine(EngineConfig(budget=2, population=2))
    trial = engine.ask()
    engine.tell(trial.key, 0.5)
    with pytest.raises(ValueError, match="in flight"):
        engine.tell(trial.key, 0.5)


def test_generation_sizes_show_a_last_generation_that_would_train_alone():
    def sizes(budget, population=3, strategy="generational"):
        return Engine(EngineConfig(strategy=strategy, population=population,
                                   budget=budget)).generation_sizes()
    assert sizes(5) == [3, 2] and sizes(6) == [3, 2, 1]        # one survivor of 3 stays
    assert sizes(550, population=100) == [100] + [75] * 6        # the paper's 7 stages
    assert sizes(2) == [2] and sizes(6, strategy="steady") is None
