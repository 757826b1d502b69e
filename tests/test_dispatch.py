"""Dispatch on a real embedded Ray: faults (a killed worker, a crashing trial, a diverged
run), retries, worker identity and threads, with a fake train function (seconds, no torch)."""
from __future__ import annotations

import io
import json
import os
import time
import types
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from search.runs.cluster import init_ray  # noqa: E402
from search.runs.dispatch import EngineSearcher, Outcome, Session, error_text, run_tune  # noqa: E402
from search.runs.display import Display  # noqa: E402
from search.evolution.engine import ROW_COLUMNS, Engine  # noqa: E402
from search.commands.presets import DispatchConfig, PRESETS, build_setup  # noqa: E402
from search.runs.folder import RunFolder  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def make_fake_train(state_dir: str, sleep: float = 0.5):
    """A train function that plays one role per genome, chosen by arrival order:
    the first genome kills its own worker process on its first attempt (SIGKILL, as an
    OOM killer would), the second raises on every attempt, the third diverges; the rest
    train. Every call is logged as one JSON line."""

    def fake_train(config, run_dir=None, *, progress=False, threads=None, seed=None):
        import signal

        key = f"{config.genome.id}-s{seed}"
        with open(os.path.join(state_dir, "calls.jsonl"), "a") as f:
            f.write(json.dumps({"key": key, "pid": os.getpid(), "threads": threads,
                                "steps": config.num_train_steps}) + "\n")
        role = None
        for name in ("crash", "raise", "diverge"):
            path = os.path.join(state_dir, name)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if open(path).read() == key:
                    role = name
                    break
                continue
            os.write(fd, key.encode())
            os.close(fd)
            role = name
            if name == "crash":
                time.sleep(sleep)  # mid-candidate
                os.kill(os.getpid(), signal.SIGKILL)
            break
        time.sleep(sleep)
        if role == "raise":
            raise ValueError(f"boom in {key}")
        fitness = float(len(config.genome.source) + len(config.genome.target))
        failed = "diverged: non-finite critic_loss at env step 1200" if role == "diverge" else None
        return types.SimpleNamespace(curve=((0, 0.0), (2000, fitness)), approx_aulc=fitness / 2,
                                     final_return=fitness, wall_s=sleep, train_s=sleep,
                                     failed=failed)

    return fake_train


def run_search(tmp_path: Path, train_fn, budget=6, population=4, max_failures=1):
    setup = build_setup("smoke", engine={"budget": budget, "population": population},
                        dispatch={"max_failures": max_failures})
    engine = Engine(setup.engine)
    folder = RunFolder.create(tmp_path / "run", setup.to_config(), engine.state_dict(),
                              engine.rows(), ROW_COLUMNS)
    out = io.StringIO()
    session = Session(engine, folder, Display(out, tty=False, log=folder.log_event))
    finished = run_tune(session, setup.train, setup.dispatch, train_fn=train_fn)
    return finished, engine, folder, out.getvalue()


def test_faults_are_retried_or_recorded_and_the_search_goes_on(tmp_path, local_ray, capfd):
    state = tmp_path / "state"
    state.mkdir()
    finished, engine, folder, shown = run_search(tmp_path, make_fake_train(str(state)))
    calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
    attempts = {}
    for call in calls:
        attempts[call["key"]] = attempts.get(call["key"], 0) + 1
    crash, boom, diverge = ((state / name).read_text() for name in ("crash", "raise", "diverge"))
    rows = {r["id"]: r for r in engine.rows()}
    print(shown)

    assert finished and engine.finished
    assert sum(r["status"] in ("trained", "failed") for r in rows.values()) == 6
    # The killed worker's candidate was retried on a fresh worker and trained.
    assert attempts[crash] == 2
    crashed = rows[crash.split("-s")[0]]
    assert crashed["status"] == "trained"
    # The crashing trial: 1 + max_failures attempts, then failed with its error; no retry
    # of the diverged run, which is failed with its reason.
    assert attempts[boom] == 2
    assert rows[boom.split("-s")[0]]["status"] == "failed"
    assert "ValueError: boom in" in rows[boom.split("-s")[0]]["error"]
    assert attempts[diverge] == 1
    assert rows[diverge.split("-s")[0]]["status"] == "failed"
    assert "diverged: non-finite critic_loss" in rows[diverge.split("-s")[0]]["error"]
    # Trained elsewhere than the driver, with as many torch threads as CPUs per trial.
    for row in rows.values():
        if row["status"] == "trained":
            host, pid = row["worker"].rsplit(":", 1)
            assert int(pid) != os.getpid()
    assert {c["threads"] for c in calls} == {1}
    assert {c["steps"] for c in calls} == {PRESETS["smoke"].train["num_train_steps"]}
    # The run folder holds the same records as the engine, and curves of trained runs only.
    on_disk = json.loads((folder.path / "engine.json").read_text())
    assert Engine.from_state_dict(on_disk).rows() == engine.rows()
    curve_ids = {line.split(",")[0] for line in (folder.path / "curves.csv").read_text().splitlines()[1:]}
    assert curve_ids == {i for i, r in rows.items() if r["status"] == "trained"}
    # The display told about the retries and failures; Ray Tune printed no tables.
    assert "retrying" in shown and "FAILED" in shown
    captured = capfd.readouterr()
    for noise in ("Trial status", "View detailed results", "╭", "Configuration for experiment",
                  "(raylet)"):
        assert noise not in captured.out + captured.err


def test_cluster_too_small_is_one_clear_error(local_ray):
    from search.runs.dispatch import concurrency

    with pytest.raises(ValueError, match="--gpus_per_candidate"):
        concurrency(DispatchConfig(gpus_per_candidate=0.5))
    with pytest.raises(ValueError, match="--cpus_per_candidate"):
        concurrency(DispatchConfig(cpus_per_candidate=64))
    assert concurrency(DispatchConfig(cpus_per_candidate=0.5)) == 4


def test_outcome_from_reported_metrics():
    metrics = {"fitness": 3.5, "final_return": 7.0, "failed": "", "curve": "[[0, 1.0], [10, 6.0]]",
               "train_s": 1.5, "wall_s": 2.0, "worker": "h:12", "steps": 10}
    outcome = Outcome.from_metrics(metrics)
    assert outcome.fitness == 3.5 and outcome.error is None
    assert outcome.curve == ((0, 1.0), (10, 6.0)) and outcome.worker == "h:12"
    failed = Outcome.from_metrics({**metrics, "fitness": float("nan"), "failed": "diverged: x"})
    assert failed.fitness is None and failed.error == "diverged: x"
    silent = Outcome.from_metrics({**metrics, "fitness": float("nan")})
    assert silent.fitness is None and "no finite fitness" in silent.error


def test_error_text_names_the_last_failure(tmp_path):
    path = tmp_path / "error.txt"
    path.write_text("Failure # 1 (occurred at x)\nTraceback\n  File y\nValueError: first\n"
                    "Failure # 2 (occurred at z)\nTraceback\nValueError: second\n")
    assert error_text(types.SimpleNamespace(error_file=str(path))) == "ValueError: second"
    path.write_text("Failure # 1 (occurred at x)\nray.exceptions.ActorDiedError: The actor died\n")
    assert "worker process died" in error_text(types.SimpleNamespace(error_file=str(path)))
    assert error_text(None).startswith("trial failed")


def test_searcher_never_waits_with_nothing_live():
    class Stuck:
        finished = False

        def ask(self):
            return None

    searcher = EngineSearcher(types.SimpleNamespace(engine=Stuck()))
    with pytest.raises(RuntimeError, match="no trial is running"):
        searcher.suggest("t1")
