"""The search's protocol end to end on a real embedded Ray, with a fake train function that
reports like rl.train (an evaluation every eval_freq steps, through on_checkpoint): trials
stopped at rungs are recorded as stopped with the steps they trained, finalist seeds and
verdict runs are never stopped, a finalist counts for selection only with its seeds told,
the winners are named before any verdict result, on seeds no selection used, and the
report's verdict is recomputed from the runs it lists."""
from __future__ import annotations

import csv
import functools
import json
import sys
import time
import types
from pathlib import Path

import pytest

from rl.probe import StepTimes
from search.commands import search_cli
from spaces import named

pytestmark = pytest.mark.slow


def _ship_this_module_by_value() -> None:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_ship_this_module_by_value()


def curve_value(config, step: int) -> float:
    """A learning curve that depends on the genome and the seed, as a real one would."""
    g = config.genome
    quality = (len(g.target) - len(g.source) + g.horizon) if config.agent == "auxi_sac" else 2
    return (10.0 * quality + config.seed % 13) * step / config.num_train_steps


def fake_train(config, run_dir=None, *, progress=False, threads=None, seed=None, on_checkpoint=None,
               log: str = ""):
    """Reports every evaluation through on_checkpoint, as rl.train does; logs each call."""
    every = config.eval_every_agent_steps * config.action_repeat
    curve = []
    with open(log, "a") as f:
        f.write(json.dumps({"event": "start", "agent": config.agent, "encoder": config.encoder_type,
                            "genome": config.genome.id, "seed": seed, "t": time.time()}) + "\n")
    for step in range(0, config.num_train_steps + 1, every):
        time.sleep(0.05)
        curve.append((step, curve_value(config, step)))
        if on_checkpoint is not None:
            on_checkpoint(tuple(curve))
    returns = [r for _, r in curve]
    with open(log, "a") as f:
        f.write(json.dumps({"event": "end", "agent": config.agent, "genome": config.genome.id,
                            "seed": seed}) + "\n")
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True)
        Path(run_dir, "eval.csv").write_text("env_step,episode_return\n" +
                                             "".join(f"{s},{r}\n" for s, r in curve))
    return types.SimpleNamespace(curve=tuple(curve), approx_aulc=sum(returns) / len(returns),
                                 final_return=returns[-1], wall_s=0.1, train_s=0.1, failed=None,
                                 env_steps=config.num_train_steps)


def fake_probe(config, members=1):
    return StepTimes(setup_s=0.5, env_s=0.0, act_s=0.0, update_s=0.0, episode_steps=0)


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_instance_for_module):
    tmp = tmp_path_factory.mktemp("protocol")
    run, log = tmp / "run", tmp / "calls.jsonl"
    argv = ["--preset", "smoke", "--budget", "9", "--population", "3", "--reduction", "2",
            "--num_cpus", "2", "--verdict_references", "sac,state-sac", "--run", str(run)]
    train = functools.partial(fake_train, log=str(log))
    assert search_cli.main(argv, train_fn=train, probe_fn=fake_probe) == 0
    return run, [json.loads(line) for line in log.read_text().splitlines()]


def test_stopped_trials_are_recorded_with_the_steps_they_trained(searched):
    run, _ = searched
    rows = [r for r in rows_of(run / "population.csv") if r["status"] in ("trained", "stopped")]
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped, "the smoke protocol stops at least one candidate at a rung"
    curves = rows_of(run / "curves.csv")
    for r in stopped:
        assert int(r["stopped_at"]) in (800, 1200) and int(r["steps"]) == int(r["stopped_at"])
        assert r["generation"] != "0"                       # the first generation is never stopped
        mine = [c for c in curves if c["id"] == r["id"]]
        assert max(int(c["env_step"]) for c in mine) == int(r["stopped_at"])  # a partial curve
        assert float(r["fitness"]) == pytest.approx(
            sum(float(c["return"]) for c in mine) / len(mine))  # its AULC up to the rung
    # never ranked on steps it did not train: every finalist ranks above every stopped one
    from search.report.run_data import load_run
    ranked = load_run(run).ranked
    statuses = list(ranked["status"])
    assert statuses == sorted(statuses, key=lambda s: s != "trained")
    at = [r for r in ranked.to_dict("records") if r["status"] == "stopped"]
    assert [r["stopped_at"] for r in at] == sorted((r["stopped_at"] for r in at), reverse=True)


def test_finalists_have_their_seeds_and_finalist_and_verdict_runs_were_never_stopped(searched):
    run, calls = searched
    state = json.loads((run / "engine.json").read_text())
    for record in state["records"]:
        kinds = dict(record["seeds"])
        results = dict((int(s), r) for s, r in record["results"])
        if all(r["stopped_at"] is None for r in results.values()):
            assert sorted(kinds.values()) == ["candidate", "finalist", "finalist"]
        for seed, kind in kinds.items():
            if kind == "finalist":
                assert results[int(seed)]["stopped_at"] is None
                assert results[int(seed)]["steps"] == 1600
    rows = [r for r in rows_of(run / "population.csv") if r["status"] == "trained"]
    assert all(len(r["seeds"].split(";")) == 3 and r["fitness_se"] for r in rows)
    assert len(list((run / "verdict" / "records").glob("*.json"))) == 6
    for record in (run / "verdict" / "records").glob("*.json"):
        data = json.loads(record.read_text())
        assert data["status"] == "done" and data["steps"] == 1600 and data["curve"][-1][0] == 1600


def test_winners_are_named_first_on_seeds_no_selection_used(searched):
    run, calls = searched
    names = json.loads((run / "verdict" / "names.json").read_text())
    records = [json.loads(p.read_text()) for p in (run / "verdict" / "records").glob("*.json")]
    assert names["winners"] and len(records) == 3 * 2  # (1 winner + SAC, SAC-state) x 2 seeds
    named_at = (run / "verdict" / "names.json").stat().st_mtime
    assert all(p.stat().st_mtime >= named_at for p in (run / "verdict" / "records").glob("*.json"))
    selection_seeds = {int(s) for r in rows_of(run / "population.csv") if r["seeds"]
                       for s in r["seeds"].split(";")}
    assert not selection_seeds & set(names["seeds"])
    assert {r["seed"] for r in records} == set(names["seeds"])
    # the named winner is the search's best by its rank
    from search.report.run_data import load_run
    assert names["winners"][0]["id"] == load_run(run).ranked["id"].iloc[0]
    # every verdict run started after the last selection result
    last_selection = max(c["t"] for c in calls if c["event"] == "start" and c["seed"] in selection_seeds)
    first_verdict = min(c["t"] for c in calls if c["event"] == "start" and c["seed"] in names["seeds"])
    assert first_verdict > last_selection
    agents = {(r["agent"], r["encoder_type"]) for r in records}
    assert agents == {("auxi_sac", "ofe"), ("pixel_sac", "ofe"), ("pixel_sac", "identity")}


def test_the_report_opens_with_the_verdict_recomputed_from_its_runs(searched, capsys):
    run, _ = searched
    assert search_cli.main(["report", str(run)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Verdict on held-out seeds")
    verdict = rows_of(run / "report" / "verdict.csv")
    first = next(r for r in verdict if r["reference"] == "SAC" and r["metric"] == "return at the top")
    winner_runs = [json.loads(p.read_text()) for p in (run / "verdict" / "records").glob("winner1-*.json")]
    sac_runs = [json.loads(p.read_text()) for p in (run / "verdict" / "records").glob("SAC__*.json")]
    mean = lambda rs: sum(r["final_return"] for r in rs) / len(rs)  # noqa: E731
    assert float(first["diff"]) == pytest.approx(mean(winner_runs) - mean(sac_runs))
    # change a run it lists: the table follows
    path = next((run / "verdict" / "records").glob("SAC__*.json"))
    data = json.loads(path.read_text())
    data["final_return"] += 100.0
    path.write_text(json.dumps(data))
    search_cli.main(["report", str(run)])
    again = next(r for r in rows_of(run / "report" / "verdict.csv")
                 if r["reference"] == "SAC" and r["metric"] == "return at the top")
    assert float(again["diff"]) == pytest.approx(float(first["diff"]) - 50.0)
    spearman = rows_of(run / "report" / "spearman.csv")
    assert [int(r["env_steps"]) for r in spearman] == [800, 1200] and spearman[0]["n"] == "3"
    assert "Protocol:" in text and "finalists only" in text
