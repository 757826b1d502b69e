"""Resume after the driver is killed (SIGKILL of its whole process group, mid-run), and the
run folder's records that make it possible (atomic files, curves, refusing a used folder)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from search.evolution.engine import ROW_COLUMNS, Engine, EngineConfig
from search.runs.folder import CURVE_COLUMNS, RunFolder, RunFolderError

REPO = Path(__file__).resolve().parent.parent

# The real CLI with a fake train function (seconds a candidate, no torch), logging every call.
DRIVER = textwrap.dedent("""
    import os, sys, time, types
    sys.path.insert(0, {repo!r})
    from rl.probe import StepTimes
    from search.commands.search_cli import main

    def fake_train(config, run_dir=None, *, progress=False, threads=None, seed=None, **_):
        with open({log!r}, "a") as f:
            f.write(f"{{config.genome.id}}-s{{seed}} {{os.getpid()}}\\n")
        time.sleep({sleep})
        fitness = float(len(config.genome.source) + len(config.genome.target))
        return types.SimpleNamespace(curve=((0, 0.0), (2000, fitness)), approx_aulc=fitness / 2,
                                     final_return=fitness, wall_s={sleep}, train_s={sleep}, failed=None)

    def fake_probe(config):  # a run takes as long as fake_train sleeps
        return StepTimes(setup_s={sleep}, env_s=0.0, act_s=0.0, update_s=0.0, episode_steps=0)

    raise SystemExit(main(sys.argv[1:], train_fn=fake_train, probe_fn=fake_probe))
""")


def read_rows(path: Path) -> list[dict]:
    with open(path / "population.csv", newline="") as f:
        return list(csv.DictReader(f))


def session_processes(sid: int) -> list[int]:
    """Processes of the killed driver's session that outlived it (Ray workers sit in
    process groups of their own), to end them by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                found.append(int(entry.name))
    return found


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the driver's process group, then whatever of its session outlived it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for pid in session_processes(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def recorded_keys(run: Path) -> set[str]:
    """The (genome, seed) results engine.json holds: what a resume must never train again."""
    from spaces import Genome

    try:
        state = json.loads((run / "engine.json").read_text())
    except (OSError, ValueError):
        return set()
    return {f"{Genome.parse(r['candidate']['genome']).id}-s{seed}"
            for r in state["records"] for seed, _ in r["results"]}


@pytest.mark.slow
def test_driver_killed_ten_times_at_random_moments_then_resumed(tmp_path):
    """SIGKILL of the driver's whole process group at ten random moments of one search (in
    Ray's start-up, in Tune's, mid-trial, mid-write), each time resumed: at the end the
    budget is met, no (genome, seed) result is recorded twice, and none recorded before a
    kill is trained again after it."""
    import random

    log, run = tmp_path / "calls.log", tmp_path / "run"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(repo=str(REPO), log=str(log), sleep=0.5))
    budget = 24  # more than ten sessions of one or two results each
    first = [sys.executable, str(script), "--preset", "smoke", "--budget", str(budget),
             "--population", "6", "--num_cpus", "2", "--run", str(run)]
    again = [sys.executable, str(script), "--resume", str(run)]
    rng = random.Random(2026)
    kills = []
    for i in range(10):
        proc = subprocess.Popen(first if i == 0 else again, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            # A random moment: in the start-up (Ray, Tune, the first trials), or a random
            # time after the n-th result of this session (mid-trial, mid-write).
            if i > 0 and rng.random() < 0.4:
                time.sleep(rng.uniform(0.2, 8.0))
            else:
                wanted, deadline = rng.randint(1, 2), time.time() + 120
                while sum(" | " in line and "fitness" in line for line in lines) < wanted:
                    assert proc.poll() is None and time.time() < deadline, "".join(lines)[-2000:]
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 1.2))
        finally:
            kill_session(proc)
        calls = log.read_text().split()[::2] if log.exists() else []
        kills.append({"recorded": recorded_keys(run), "calls": len(calls)})
    done = subprocess.run(again, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    calls = log.read_text().split()[::2]
    rows = read_rows(run)
    trained = [r for r in rows if r["status"] == "trained"]
    assert len(trained) == budget == len({r["id"] for r in trained})        # the budget, met
    final = recorded_keys(run)
    assert final == {f"{r['id']}-s{r['seeds']}" for r in trained} == set(calls)
    for kill in kills:                                                       # never trained again
        after = calls[kill["calls"]:]
        assert not kill["recorded"] & set(after), kill
    events = (run / "events.log").read_text().splitlines()
    for key in final:                                                        # recorded once
        genome_id, seed = key.rsplit("-s", 1)
        assert sum(f"{genome_id} seed {seed}: fitness" in e for e in events) <= 1, key
    with open(run / "curves.csv", newline="") as f:
        curves = {(r["id"], r["seed"], r["env_step"]) for r in csv.DictReader(f)}
    assert len(curves) == 2 * budget                                         # one curve each
    meta = json.loads((run / "meta.json").read_text())
    assert [s["resume"] for s in meta["sessions"]][0] is False
    assert sum(k["recorded"] != kills[i - 1]["recorded"] for i, k in enumerate(kills) if i) >= 1


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
