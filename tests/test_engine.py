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


def test_elite_reevals_run_top_genomes_on_fresh_seeds():
    config = EngineConfig(population=6, budget=12, seeds_per_candidate=2, elite_reevals=3, seed=9)
    engine = Engine(config)
    asked = run_recording(engine, workers=2, fitness=FITNESS)
    elites = [t for t in asked if t.kind == "elite_reeval"]
    assert len(elites) == 6 and all(t.kind == "candidate" for t in asked[:-6])
    first_seeds = collections.defaultdict(set)
    for trial in asked[:-6]:
        first_seeds[trial.candidate.id].add(trial.seed)
    rows = [r for r in engine.rows() if r["status"] in TRAINED]
    top = sorted(rows, key=lambda r: -r["fitness"])[:3]
    assert {t.candidate.id for t in elites} == {r["id"] for r in top}
    for trial in elites:
        assert trial.seed not in first_seeds[trial.candidate.id]
    assert all(len(r["seeds"].split(";")) == 4 for r in top)
    assert sum(r["status"] in TRAINED for r in engine.rows()) == 12


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
    config = EngineConfig(strategy=strategy, population=10, budget=50, seeds_per_candidate=2,
                          elite_reevals=2, seed=13)
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
