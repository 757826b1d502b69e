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

# The real CLI with a fake train function (no torch) that reports every evaluation through
# on_checkpoint as rl.train does, so that rungs stop candidates; every call is logged.
DRIVER = textwrap.dedent("""
    import os, sys, time, types
    sys.path.insert(0, {repo!r})
    from rl.probe import StepTimes
    from search.commands.search_cli import main

    def fake_train(config, run_dir=None, *, progress=False, threads=None, seed=None,
                   on_checkpoint=None):
        key = f"{{config.agent}}/{{config.encoder_type}}/{{config.genome.id}}-s{{seed}}"
        with open({log!r}, "a") as f:
            f.write(f"{{key}} {{os.getpid()}}\\n")
        g = config.genome
        # spread over genomes (so that rungs stop some), and a little over seeds
        quality = int(g.id[:4], 16) % 20 + seed % 3 if config.agent == "auxi_sac" else 10
        every = config.eval_every_agent_steps * config.action_repeat
        curve = []
        for step in range(0, config.num_train_steps + 1, every):
            time.sleep({sleep} / 5)
            curve.append((step, quality * step / config.num_train_steps))
            if on_checkpoint is not None:
                on_checkpoint(tuple(curve))
        returns = [r for _, r in curve]
        if run_dir is not None:
            os.makedirs(run_dir)
            with open(os.path.join(run_dir, "eval.csv"), "w") as f:
                f.write("".join(f"{{s}},{{r}}\\n" for s, r in curve))
        return types.SimpleNamespace(curve=tuple(curve), approx_aulc=sum(returns) / len(returns),
                                     final_return=returns[-1], wall_s={sleep}, train_s={sleep},
                                     failed=None, env_steps=config.num_train_steps)

    def fake_probe(config):  # a run takes about as long as fake_train sleeps
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
    """The results the run folder holds, selection (engine.json) and verdict (its records),
    as the fake's keys: what a resume must never train again."""
    from spaces import Genome, named

    keys = set()
    try:
        state = json.loads((run / "engine.json").read_text())
    except (OSError, ValueError):
        state = {"records": []}
    for r in state["records"]:
        gid = Genome.parse(r["candidate"]["genome"]).id
        keys |= {f"auxi_sac/ofe/{gid}-s{seed}" for seed, _ in r["results"]}
    for path in (run / "verdict" / "records").glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        gid = Genome.parse(rec["genome"]).id if rec["genome"] else named("a2-winner").id
        keys.add(f"{rec['agent']}/{rec['encoder_type']}/{gid}-s{rec['seed']}")
    return keys


# Where each kill falls: the start-up, or just after a result of a kind (a stopped candidate,
# a finalist seed, a verdict run). A selection phase that has ended gives way to the verdict.
EVENTS = {"result": lambda line: " | " in line and "fitness" in line,
          "rung": lambda line: "stopped at" in line,
          "finalist": lambda line: "(finalist): fitness" in line,
          "verdict": lambda line: line.startswith("[") and "| runs " not in line and " runs " in line
          and "AULC" in line}
PLAN = ("result", "rung", "startup", "finalist", "rung", "finalist", "result", "verdict",
        "startup", "verdict")


@pytest.mark.slow
def test_driver_killed_ten_times_in_every_phase_then_resumed(tmp_path):
    """SIGKILL of the driver's whole process group ten times in one search (in Ray's and
    Tune's start-up, mid-trial, mid-write; during rung training, finalist seeds and the
    verdict), each time resumed: at the end the budget is met and the verdict complete, no
    result is recorded twice, and none recorded before a kill is trained again after it."""
    import random

    log, run = tmp_path / "calls.log", tmp_path / "run"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(repo=str(REPO), log=str(log), sleep=1.5))
    budget = 16
    first = [sys.executable, str(script), "--preset", "smoke", "--budget", str(budget),
             "--population", "4", "--reduction", "2", "--num_cpus", "2", "--run", str(run)]
    again = [sys.executable, str(script), "--resume", str(run)]
    rng = random.Random(2026)
    kills = []
    for i, where in enumerate(PLAN):
        if where != "verdict" and (run / "verdict" / "names.json").exists():
            where = "verdict"
        proc = subprocess.Popen(first if i == 0 else again, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            if where == "startup" and i > 0:
                time.sleep(rng.uniform(0.2, 8.0))
            else:
                # the wanted kind of result, or (if this session brings none soon) the fourth
                # result of any kind
                deadline = time.time() + 120
                while not any(EVENTS[where](line) for line in lines):
                    if where in ("rung", "finalist") and sum(map(EVENTS["result"], lines)) >= 4:
                        where = "result"
                        break
                    assert proc.poll() is None and time.time() < deadline, \
                        f"kill {i} ({where}): " + "".join(lines)[-2000:]
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.6))
        finally:
            kill_session(proc)
        calls = log.read_text().split()[::2] if log.exists() else []
        kills.append({"where": where, "recorded": recorded_keys(run), "calls": len(calls)})
    done = subprocess.run(again, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {k["where"] for k in kills} >= {"rung", "finalist", "verdict", "startup"}
    calls = log.read_text().split()[::2]
    rows = read_rows(run)
    done_rows = [r for r in rows if r["status"] in ("trained", "stopped")]
    assert len(done_rows) == budget == len({r["id"] for r in done_rows})     # the budget, met
    assert any(r["status"] == "stopped" for r in done_rows)
    final = recorded_keys(run)
    assert final == set(calls)                                                # each trained...
    for kill in kills:                                                        # ...and never again
        after = calls[kill["calls"]:]
        assert not kill["recorded"] & set(after), kill["where"]
    twice = {k for k in calls if calls.count(k) > 1}                         # only lost ones twice
    assert all(any(k not in kill["recorded"] for kill in kills) for k in twice)
    verdict = list((run / "verdict" / "records").glob("*.json"))
    assert len(verdict) == 4 * 2                                              # the verdict, complete
    events = (run / "events.log").read_text().splitlines()
    for row in done_rows:                                                     # recorded once
        for seed in row["seeds"].split(";"):
            assert sum(f"{row['id']} seed {seed}" in e and ": " in e for e in events) <= 1
    with open(run / "curves.csv", newline="") as f:
        curves = list(csv.DictReader(f))
    assert len({(c["id"], c["seed"]) for c in curves}) == sum(len(r["seeds"].split(";"))
                                                               for r in done_rows)
    meta = json.loads((run / "meta.json").read_text())
    assert [s["resume"] for s in meta["sessions"]][0] is False


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
