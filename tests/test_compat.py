"""Run folders written by the code before the layout change (tests/fixtures/pre_layout,
see its README) resume and report with today's code: what they recorded is kept as it
was, and only what they had not recorded is trained."""
from __future__ import annotations

import csv
import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from rl.probe import StepTimes
from search.commands import evaluate_cli, search_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pre_layout"
pytestmark = pytest.mark.slow


def _ship_this_module_by_value() -> None:
    """Ray workers cannot import this test module: send its fakes by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_ship_this_module_by_value()


def fake_train(config, run_dir=None, *, progress=False, threads=None, seed=None):
    """Stands in for rl.train.train (no torch): a score from the genome, files like it."""
    size = len(config.genome.source) + len(config.genome.target) if config.agent == "auxi_sac" else 1
    curve = ((0, 0.0), (config.num_train_steps, float(10 * size + seed % 7)))
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True)
        Path(run_dir, "eval.csv").write_text("env_step,episode_return\n" +
                                             "".join(f"{s},{r}\n" for s, r in curve))
    return types.SimpleNamespace(curve=curve, approx_aulc=curve[1][1] / 2, final_return=curve[1][1],
                                 wall_s=0.1, train_s=0.1, failed=None,
                                 env_steps=config.num_train_steps)


def fake_probe(config, members=1):
    return StepTimes(setup_s=1.0, env_s=0.0, act_s=0.0, update_s=0.0, episode_steps=0)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_search_folder_of_before_resumes_and_reports(tmp_path, capsys, ray_instance):
    run = tmp_path / "search-run"
    shutil.copytree(FIXTURES / "search-run", run)
    before = {r["id"]: r for r in rows(run / "population.csv") if r["status"] == "trained"}
    assert len(before) == 2 and all(":" in r["worker"] for r in before.values())
    assert search_cli.main(["--resume", str(run)], train_fn=fake_train, probe_fn=fake_probe) == 0
    out = capsys.readouterr().out
    assert "resumed: 2 of 6 candidates done" in out and "done:" in out
    after = rows(run / "population.csv")
    trained = [r for r in after if r["status"] == "trained"]
    assert len(trained) == 6 and len({r["id"] for r in trained}) == 6
    for genome_id, row in before.items():  # recorded before: kept as it was (old worker form)
        again = next(r for r in trained if r["id"] == genome_id)
        assert (again["fitness"], again["worker"], again["seeds"]) == \
               (row["fitness"], row["worker"], row["seeds"])
    config = json.loads((run / "config.json").read_text())
    assert config["dispatch"]["cpus_per_candidate"] == 1.0  # config.json is not rewritten
    sessions = json.loads((run / "meta.json").read_text())["sessions"]
    assert [s["resume"] for s in sessions] == [False, True]
    assert search_cli.main(["report", str(run)]) == 0
    assert (run / "report" / "top_k.md").is_file()


def test_an_evaluation_folder_of_before_resumes_and_reports(tmp_path, capsys, ray_instance):
    run = tmp_path / "eval-run"
    shutil.copytree(FIXTURES / "eval-run", run)
    records = {p.name: p.read_text() for p in (run / "records").glob("*.json")}
    assert len(records) == 2
    assert not (run / "runs" / "CURL__cartpole_swingup__s1" / "result.json").exists()  # half-way
    code = evaluate_cli.main(["--resume", "--run", str(run), "--quiet"], train_fn=fake_train,
                             probe_fn=fake_probe)
    assert code == 0, capsys.readouterr().err
    after = {p.name: p.read_text() for p in (run / "records").glob("*.json")}
    assert len(after) == 6 and all(after[name] == text for name, text in records.items())
    curl = json.loads(after["CURL__cartpole_swingup__s1.json"])
    assert curl["status"] == "done" and len(curl["worker"].split(":")[0]) == 56  # a Ray node id
    # the half-written folder of the killed run was replaced by the files its new run shipped
    assert sorted(p.name for p in (run / "runs" / "CURL__cartpole_swingup__s1").iterdir()) == ["eval.csv"]
    assert (run / "summary.md").is_file() and "6 of 6 planned runs recorded" in (run / "summary.md").read_text()
    assert evaluate_cli.main(["--report", "--run", str(run)]) == 0


def test_broken_folders_are_one_line_and_left_alone(tmp_path, capsys):
    run = tmp_path / "search-run"
    shutil.copytree(FIXTURES / "search-run", run)
    (run / "engine.json").write_text("{not json")
    assert search_cli.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read" in err[0] and "engine.json" in err[0]
    assert (run / "engine.json").read_text() == "{not json"
    state = json.loads((FIXTURES / "search-run" / "engine.json").read_text())
    (run / "engine.json").write_text(json.dumps({**state, "format": 99}))
    assert search_cli.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "format" in err[0], err
    ev = tmp_path / "eval-run"
    shutil.copytree(FIXTURES / "eval-run", ev)
    (ev / "eval_config.json").write_text("[]")
    assert evaluate_cli.main(["--resume", "--run", str(ev)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an evaluation config" in err[0], err
