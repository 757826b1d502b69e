"""Resume after the driver is killed (SIGKILL of its whole process group, mid-run), and the
run folder's records that make it possible (atomic files, curves, refusing a used folder)."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from search.evolution.engine import ROW_COLUMNS, Engine, EngineConfig
from search.runs.folder import CURVE_COLUMNS, RunFolder, RunFolderError

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from kill_resume import check, kill_and_resume, read_rows  # noqa: E402

@pytest.mark.slow
def test_driver_killed_in_every_phase_then_resumed(tmp_path):
    """SIGKILL of the driver's whole process group in each phase of one search (rung
    training, finalist seeds, the verdict; bench/kill_resume.py does ten kills), each time
    resumed: the budget is met and the verdict complete, no result is recorded twice, and
    none recorded before a kill is trained again after it."""
    outcome = kill_and_resume(tmp_path, ("finalist", "rung", "verdict"), budget=8, sleep=0.5)
    assert check(outcome) == []
    assert {k["where"] for k in outcome["kills"]} >= {"finalist", "verdict"}
    assert "rung" in {k["where"] for k in outcome["kills"]} or any(
        r["status"] == "stopped" for r in read_rows(outcome["run"]))


# ---------------------------------------------------------------- the run folder
def new_folder(tmp_path: Path, config: dict | None = None) -> tuple[RunFolder, Engine]:
    engine = Engine(EngineConfig(population=4, budget=6))
    config = config or {"fitness": "rl", "search": {"budget": 6}, "train": {"batch_size": 64}}
    return RunFolder.create(tmp_path / "run", config, engine.state_dict(), engine.rows(),
                            ROW_COLUMNS), engine


def test_run_folder_files_and_no_temp_files_left(tmp_path):
    folder, engine = new_folder(tmp_path)
    names = sorted(p.name for p in folder.path.iterdir())
    assert names == ["config.json", "engine.json", "meta.json", "population.csv",
                     "population.parquet"]
    assert json.loads((folder.path / "config.json").read_text())["format"] == "a2ls-search-run/1"
    trial = engine.ask()
    folder.put_curve(trial.candidate.id, trial.seed, [(0, 1.0), (1000, 5.0)])
    engine.tell(trial.key, 3.0, final_return=5.0, worker="h:1", steps=1000)
    folder.save(engine.state_dict(), engine.rows(), ROW_COLUMNS)
    assert not [p for p in folder.path.iterdir() if p.name.startswith(".")]
    import pandas as pd

    table = pd.read_parquet(folder.path / "population.parquet")
    assert list(table.columns) == list(ROW_COLUMNS)
    assert table.loc[0, "status"] == "trained" and table.loc[0, "fitness"] == 3.0
    assert read_rows(folder.path)[0]["parents"] == ""
    assert Engine.from_state_dict(RunFolder.load(folder.path).engine_state()).rows() == engine.rows()


def test_a_rerun_replaces_its_curve(tmp_path):
    folder, _ = new_folder(tmp_path)
    folder.put_curve("abc", 7, [(0, 1.0), (1000, 2.0)])
    folder.put_curve("def", 1, [(0, 0.0)])
    folder.put_curve("abc", 7, [(0, 3.0), (1000, 4.0)])  # the in-flight trial, rerun on resume
    again = RunFolder.load(folder.path)                   # and read back by the next session
    again.put_curve("ghi", 2, [(0, 9.0)])
    with open(folder.path / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CURVE_COLUMNS
    assert [(r["id"], r["return"]) for r in rows] == [("abc", "3.0"), ("abc", "4.0"),
                                                      ("def", "0.0"), ("ghi", "9.0")]


def test_a_used_folder_is_refused_and_left_alone(tmp_path):
    folder, _ = new_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.path.iterdir()}
    same = {"fitness": "rl", "search": {"budget": 6}, "train": {"batch_size": 64}}
    with pytest.raises(RunFolderError, match="--resume"):
        RunFolder.check_new(folder.path, same)
    with pytest.raises(RunFolderError, match=r"another config \(search.budget 6 -> 8\)"):
        RunFolder.check_new(folder.path, {**same, "search": {"budget": 8}})
    # Dispatch settings do not make another search.
    with pytest.raises(RunFolderError, match="already holds this search"):
        RunFolder.check_new(folder.path, {**same, "dispatch": {"cpus_per_candidate": 2}})
    assert {p.name: p.read_bytes() for p in folder.path.iterdir()} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not a search run"):
        RunFolder.check_new(other, same)
    with pytest.raises(RunFolderError, match="not a search run"):
        RunFolder.load(other)
    RunFolder.check_new(tmp_path / "empty", same)  # a new or empty folder is fine


def test_planted_session_saves_at_most_once_a_interval_and_flushes_at_the_end(tmp_path):
    """The planted driver tells thousands of results a second: its saves are throttled
    (otherwise quadratic in the budget), and what it skipped is written when it ends."""
    pytest.importorskip("ray")
    import io

    from search.runs.display import Display
    from search.runs.session import SearchSession, run_planted
    from spaces import named

    folder, _ = new_folder(tmp_path)
    engine = Engine(EngineConfig(population=10, budget=60, seed=3))
    saves = []
    original = folder.save
    folder.save = lambda *args: (saves.append(len(args[1])), original(*args))
    session = SearchSession(engine, folder, Display(io.StringIO(), tty=False), min_interval_s=3600)
    run_planted(session, named("a2-winner"))
    assert engine.finished
    assert len(saves) == 2  # the first result, then the flush
    rows = read_rows(folder.path)
    assert len(rows) == len(engine.rows()) == saves[-1]
    assert sum(r["status"] == "trained" for r in rows) == 60
    resumed = Engine.from_state_dict(RunFolder.load(folder.path).engine_state())
    assert resumed.finished and resumed.rows() == engine.rows()
