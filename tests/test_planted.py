"""The planted fitness with noise (issue 13): reproducible, of the asked std, noisier at a
lower rung, exact at level 0; its targets; the --planted_noise flag through config.json and
--resume. No Ray, no torch."""
import json
import os
import pathlib
import statistics
import subprocess
import sys

import pytest

from spaces import named, reject_reason, similarity
from search.evolution.engine import Engine, EngineConfig
from search.evolution.planted import (PLANTED_TARGETS, PlantedFitness, drive, parse_planted,
                                      planted_fitness, ranking, run_planted, similarity_spread)

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = named("a2-winner")
PROTOCOL = dict(population=10, budget=60, rungs=(50_000, 70_000), reduction=3, finalist_seeds=2)
TOP = 100_000


def noisy_run(seed: int, noise: float = 1.0, strategy: str = "generational"):
    engine = Engine(EngineConfig(strategy=strategy, seed=seed, **PROTOCOL))
    drive(engine, PlantedFitness(TARGET, noise, top_steps=TOP), workers=3)
    return engine


@pytest.mark.parametrize("strategy", ("generational", "steady"))
def test_same_seed_same_noisy_run_and_population(strategy):
    a, b = noisy_run(5, strategy=strategy), noisy_run(5, strategy=strategy)
    assert a.rows() == b.rows() and a.state_dict() == b.state_dict()
    assert any(r["status"] == "stopped" for r in a.rows())          # the rungs stopped some
    assert len({r["fitness"] for r in a.rows()}) > 30                 # and the scores are noisy
    assert noisy_run(6, strategy=strategy).rows() != a.rows()


SCRIPT = """
import json
from search.evolution.engine import Engine, EngineConfig
from search.evolution.planted import PlantedFitness, drive, parse_planted
engine = Engine(EngineConfig(strategy="steady", seed=5, population=10, budget=60,
                             rungs=(50_000, 70_000), reduction=3, finalist_seeds=2))
drive(engine, PlantedFitness(parse_planted("planted:a2-winner"), 1.0, top_steps=100_000), workers=3)
print(json.dumps(engine.rows()))
"""


def test_noise_is_the_same_in_a_fresh_process():
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="7")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps(noisy_run(5, strategy="steady").rows()))


def test_a_resumed_noisy_run_is_the_uninterrupted_one():
    whole = noisy_run(8)
    first = Engine(EngineConfig(seed=8, **PROTOCOL))
    fitness = PlantedFitness(TARGET, 1.0, top_steps=TOP)
    drive(first, fitness, workers=3, max_tells=41)
    again = Engine.from_state_dict(json.loads(json.dumps(first.state_dict())))
    drive(again, fitness, workers=3)
    assert again.rows() == whole.rows()


@pytest.mark.parametrize("level", (0.5, 2.0))
def test_noise_has_the_asked_std_over_many_draws_of_one_genome(level):
    fitness = PlantedFitness(TARGET, level)
    genome = named("forward-dynamics")
    draws = [fitness.scores(genome, seed, 3, genome_id=genome.id)[0] for seed in range(4000)]
    want = level * similarity_spread(TARGET)
    # the sample std of 4000 normal draws is within 5% of the std with odds of ~1e-10 against
    assert statistics.stdev(draws) == pytest.approx(want, rel=0.05)
    assert statistics.mean(draws) == pytest.approx(similarity(genome, TARGET), abs=4 * want / 4000**0.5)


def test_the_unit_is_the_similarity_std_over_random_genomes():
    # about 5 of the 64 positions (the std of a sum of 64 weakly dependent agreements)
    for target in PLANTED_TARGETS.values():
        assert 0.04 < similarity_spread(target) < 0.1
    assert similarity_spread(TARGET) == similarity_spread(TARGET)   # a fixed draw


def test_a_lower_rung_is_noisier_by_one_over_sqrt_of_its_fraction():
    fitness = PlantedFitness(TARGET, 1.0, top_steps=TOP)
    genome, rungs = named("spr-like"), (25_000, 50_000)
    draws = [fitness.scores(genome, seed, 1, rungs, genome.id) for seed in range(4000)]
    true, std = similarity(genome, TARGET), fitness.std
    for i, fraction in enumerate((0.25, 0.5, 1.0)):
        errors = [d[i] - true for d in draws]
        assert statistics.stdev(errors) == pytest.approx(std / fraction**0.5, rel=0.05)
    # one run's curve: the rung's error is part of the top's (correlation sqrt(fraction))
    low = [d[0] for d in draws]
    top = [d[2] for d in draws]
    assert statistics.correlation(low, top) == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="top_steps"):
        PlantedFitness(TARGET, 1.0).scores(genome, 1, 1, rungs)


def test_noise_level_zero_gives_the_exact_numbers_of_before():
    config = EngineConfig(strategy="steady", population=20, budget=200, seeds_per_candidate=2, seed=4)
    exact = Engine(config)
    drive(exact, planted_fitness(TARGET), workers=2)           # the benchmark before noise
    zero = Engine(config)
    drive(zero, PlantedFitness(TARGET, 0.0), workers=2)
    assert zero.rows() == exact.rows()
    assert run_planted(config, TARGET, workers=2, noise=0.0) == exact.rows()
    for row in zero.rows():
        if row["fitness"] is not None:
            assert row["fitness"] == similarity(parse_planted("planted:" + row["genome"]), TARGET)
    # through the protocol too (rung stops, finalist seeds): every score is the similarity
    protocol = Engine(EngineConfig(seed=4, **PROTOCOL))
    drive(protocol, PlantedFitness(TARGET, 0.0, top_steps=TOP))
    assert any(r["status"] == "stopped" for r in protocol.rows())
    for record in protocol.records():
        want = similarity(record.candidate.genome, TARGET)
        assert all(r.fitness == want for r in record.results.values())
    assert [similarity(g, TARGET) for g in ranking(protocol)[:3]] == \
        sorted((r.fitness for r in protocol.records() if r.stopped_at is None), reverse=True)[:3]


def test_max_runs_counts_stopped_trials_by_their_fraction():
    engine = Engine(EngineConfig(seed=2, **{**PROTOCOL, "budget": 500}))
    fitness = PlantedFitness(TARGET, 1.0, top_steps=TOP)
    drive(engine, fitness, max_runs=100)
    spent = sum(fitness.cost(r.stopped_at) for rec in engine.records() for r in rec.results.values())
    assert 100 <= spent < 101


def test_targets_are_fixed_valid_and_named():
    assert {"a2-winner", "a2-winner-v"} <= set(PLANTED_TARGETS)
    assert str(PLANTED_TARGETS["random-k6"]) == \
        "k6 s0011000/a000010/r000000 > s1110000/a001101/r000100 inner_product"
    for name, target in PLANTED_TARGETS.items():
        assert target == target.canonical() and reject_reason(target) is None
        assert parse_planted("planted:" + name) == target
    assert len({(t.horizon, t.metric, t.negatives) for t in PLANTED_TARGETS.values()}) >= 4
    with pytest.raises(ValueError, match="planted targets"):
        parse_planted("planted:random-k99")


def test_planted_noise_flag_goes_to_config_json_and_resume_keeps_it(tmp_path, capsys):
    from search.commands.presets import SearchSetup, build_setup
    from search.commands.search_cli import main

    run = tmp_path / "noisy"
    argv = ["--preset", "smoke", "--fitness", "planted:random-k2", "--planted_noise", "1.5",
            "--budget", "20", "--population", "4", "--run", str(run)]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["planted_noise"] == 1.5 and config["fitness"].startswith("planted:k2 ")
    assert SearchSetup.from_config(config).planted_noise == 1.5
    rows = population(run)
    assert "stopped" in {r["status"] for r in rows}                  # noisy: candidates climb rungs
    assert any(len(r["seeds"].split(";")) == 3 for r in rows)         # finalist seeds averaged
    assert main(["--resume", str(run)]) == 0 and "already finished" in capsys.readouterr().out
    assert main(["--resume", str(run), "--planted_noise", "0"]) == 2
    assert "--planted_noise cannot be given" in capsys.readouterr().err
    exact = build_setup("smoke", fitness="planted:a2-winner")
    assert exact.planted_noise == 0.0 and exact.to_config()["planted_noise"] == 0.0
    assert "planted_noise" not in build_setup("smoke").to_config()    # rl runs unchanged
    with pytest.raises(ValueError, match="--planted_noise: only with --fitness planted"):
        build_setup("smoke", planted_noise=1.0)
    with pytest.raises(ValueError, match="--planted_noise: expected a number >= 0"):
        build_setup("smoke", fitness="planted:a2-winner", planted_noise=-1.0)


def population(run: pathlib.Path) -> list[dict]:
    import csv

    with open(run / "population.csv") as f:
        return list(csv.DictReader(f))
