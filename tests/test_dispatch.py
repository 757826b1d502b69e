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

from search.commands.presets import PRESETS, build_setup  # noqa: E402
from search.evolution.engine import ROW_COLUMNS, Engine  # noqa: E402
from search.runs.cluster import concurrency  # noqa: E402
from search.runs.config import DispatchConfig, DispatchError  # noqa: E402
from search.runs.display import Display  # noqa: E402
from search.runs.folder import RunFolder  # noqa: E402
from search.runs.jobs import Job, Outcome, execute, pack_files, worker_name  # noqa: E402
from search.runs.session import SearchSession  # noqa: E402
from search.runs.tuner import JobSearcher, error_text, run_jobs  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def local_ray(ray_instance):
    """Ray with 2 CPUs (tests/conftest.py)."""


def make_fake_train(state_dir: str, sleep: float = 0.5):
    """A train function that plays one role per genome, chosen by arrival order:
    the first genome kills its own worker process on its first attempt (SIGKILL, as an
    OOM killer would), the second raises on every attempt, the third diverges; the rest
    train. Every call is logged as one JSON line."""

    def fake_train(config, run_dir=None, *, progress=False, threads=None, seed=None, **_):
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
                                     failed=failed, env_steps=2000)

    return fake_train


def run_search(tmp_path: Path, train_fn, budget=6, population=4, max_failures=1):
    setup = build_setup("smoke", engine={"budget": budget, "population": population,
                                         "finalist_seeds": 0, "rungs": ()},
                        dispatch={"max_failures": max_failures})
    engine = Engine(setup.engine)
    folder = RunFolder.create(tmp_path / "run", setup.to_config(), engine.state_dict(),
                              engine.rows(), ROW_COLUMNS)
    out = io.StringIO()
    session = SearchSession(engine, folder, Display(out, tty=False, log=folder.log_event),
                            base=setup.train)
    run_jobs(session, setup.dispatch, folder.tune_dir, train_fn=train_fn)
    return engine.finished, engine, folder, out.getvalue()


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
    # Trained elsewhere than the driver (on this instance's one node), with as many torch
    # threads as CPUs per trial.
    nodes = {n["NodeID"] for n in ray.nodes()}
    for row in rows.values():
        if row["status"] == "trained":
            node, pid = row["worker"].rsplit(":", 1)
            assert int(pid) != os.getpid() and node in nodes
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
    with pytest.raises(DispatchError, match="--gpus_per_trial") as err:
        concurrency(DispatchConfig(gpus_per_trial=0.5))
    assert str(err.value.as_flags({"gpus_per_trial": "gpus_per_run"})).startswith("--gpus_per_run: ")
    with pytest.raises(DispatchError, match="--cpus_per_trial"):
        concurrency(DispatchConfig(cpus_per_trial=64))
    assert concurrency(DispatchConfig(cpus_per_trial=0.5)) == 4
    assert concurrency(DispatchConfig(cpus_per_trial=0.5, max_concurrent=3)) == 3


@pytest.mark.parametrize("changes, field", [
    ({"cpus_per_trial": 0}, "cpus_per_trial"), ({"cpus_per_trial": float("nan")}, "cpus_per_trial"),
    ({"gpus_per_trial": -0.5}, "gpus_per_trial"), ({"max_failures": -1}, "max_failures"),
    ({"max_concurrent": 0}, "max_concurrent"), ({"num_cpus": 0}, "num_cpus"),
    ({"address": "auto", "num_cpus": 2}, "num_cpus"), ({"address": " "}, "address")])
def test_dispatch_settings_are_validated_naming_the_field(changes, field):
    with pytest.raises(DispatchError) as err:
        DispatchConfig(**changes)
    assert err.value.field == field and str(err.value).startswith(f"--{field}: ")
    assert "\n" not in str(err.value)


def test_dispatch_of_a_folder_written_before_the_layout_change_reads_its_old_names():
    old = {"address": None, "cpus_per_candidate": 2.0, "gpus_per_candidate": 0.25,
           "max_failures": 2, "max_concurrent": None}
    assert DispatchConfig.from_dict(old) == DispatchConfig(cpus_per_trial=2.0, gpus_per_trial=0.25)


def test_outcome_from_reported_metrics():
    metrics = {"approx_aulc": 3.5, "final_return": 7.0, "failed": "", "curve": "[[0, 1.0], [10, 6.0]]",
               "train_s": 1.5, "wall_s": 2.0, "worker": "ab12:12", "steps": 10,
               "files": json.dumps({"eval.csv": "YSxi"}), "dropped": "[]"}
    outcome = Outcome.from_metrics(metrics, attempts=2)
    assert outcome.fitness == 3.5 and outcome.problem is None and outcome.attempts == 2
    assert outcome.curve == ((0, 1.0), (10, 6.0)) and outcome.worker == "ab12:12"
    assert outcome.files == {"eval.csv": b"a,b"} and outcome.steps == 10
    failed = Outcome.from_metrics({**metrics, "approx_aulc": float("nan"), "failed": "diverged: x"})
    assert failed.fitness is None and failed.failed == "diverged: x"
    silent = Outcome.from_metrics({**metrics, "approx_aulc": float("nan")})
    assert silent.fitness is None and "no finite AULC" in silent.failed


def test_a_job_round_trips_and_a_worker_ships_its_run_folder_back(tmp_path):
    """What a trial does in its worker: train into a temporary folder, report every file
    (the driver writes them: no shared disk), on the CPU when Ray gave it no GPU."""
    from rl.config import TrainConfig, resolve

    config = resolve(TrainConfig(domain_name="cartpole_swingup", seed=4, device="auto"))
    job = Job("k-s4", config, keep_files=True)
    again = Job.from_params(json.loads(json.dumps(job.params())))
    assert again == job
    seen = {}

    def fake_train(config, run_dir=None, *, threads=None, seed=None):
        seen.update(device=config.device, threads=threads, seed=seed, run_dir=run_dir)
        (run_dir / "sub").mkdir(parents=True)
        (run_dir / "eval.csv").write_text("env_step,episode_return\n0,1.0\n")
        (run_dir / "sub" / "model.pt").write_bytes(b"\x00" * 100)
        return types.SimpleNamespace(curve=((0, 1.0),), approx_aulc=1.0, final_return=1.0,
                                     wall_s=0.1, train_s=0.1, failed=None, env_steps=0)

    reports = []
    execute(job.params(), threads=3, use_gpu=False, train_fn=fake_train, report=reports.append)
    assert seen["device"] == "cpu" and seen["threads"] == 3 and seen["seed"] == 4
    assert not seen["run_dir"].exists()  # the worker's temporary folder is gone
    outcome = Outcome.from_metrics(reports[0])
    assert outcome.files == {"eval.csv": b"env_step,episode_return\n0,1.0\n",
                             "sub/model.pt": b"\x00" * 100}
    assert outcome.worker == worker_name() and outcome.curve == ((0, 1.0),)
    # Over the limit, only the .csv/.json files come back, and the others are named.
    (tmp_path / "a.csv").write_text("x" * 50)
    (tmp_path / "big.pt").write_bytes(b"y" * 100)
    packed, dropped = pack_files(tmp_path, limit=120)
    assert list(packed) == ["a.csv"] and dropped == ["big.pt"]


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

        def next_job(self):
            return None

    searcher = JobSearcher(Stuck())
    with pytest.raises(RuntimeError, match="no trial is running"):
        searcher.suggest("t1")
