"""evaluate.py: the plan, bad input, Ray dispatch with retries, resume after kill -9, the
report; end to end with the real rl.train (skipped until it can train)."""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import pytest

from search.commands import evaluate_cli as evaluate
from search.evaluation import folder as store
from search.evaluation import losses, plan as ev
from search.evaluation.session import EvalSession
from search.report import eval_report
from search.runs.config import DispatchConfig
from search.runs.display import Display
from search.runs.jobs import Outcome
from search.runs.tuner import run_jobs
from spaces import named

ROOT = Path(__file__).resolve().parents[1]
A2 = str(named("a2-winner"))
# The must-show command, and flags that make it fast enough for CI.
MUST_SHOW = ("--loss a2-winner --domain_name cartpole_swingup --encoder_type ofe "
             "--encoder_hidden_size 40 --num_layers 1 --num_train_steps 4000 --init_steps 100 "
             "--eval_freq 1000 --seeds 2").split()
FAST = "--batch_size 64 --hidden_dim 64 --num_eval_episodes 1".split()
FAKE_FLAGS = ["--domain_name", "cartpole_swingup", "--encoder_type", "ofe",
              "--num_train_steps", "3000", "--eval_freq", "1000", "--quiet"]


def _real_train_works() -> bool:
    try:
        import rl.train  # noqa: F401  (needs rl.agent, rl.replay, ...)
    except ImportError:
        return False
    return True


needs_real_train = pytest.mark.skipif(not _real_train_works(), reason="rl.train cannot import yet")


def _ship_this_module_by_value() -> None:
    """Ray workers cannot import this test module: send its fakes by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_ship_this_module_by_value()


# ------------------------------------------------------------------- a fake train
def fake_train(config, run_dir, *, progress=False, threads=None, seed=None, calls=None,
               fail=None, die=None, diverge=(), sleep=0.0):
    """Stands in for rl.train.train: a straight learning curve per agent and seed.

    ``calls``: a folder that gets one file per call; ``fail``/``die``: {agent: n} raises /
    kills its worker process on the first n calls of that agent; ``diverge``: agents whose
    runs come back ``failed``.
    """
    tag = f"{config.agent}-{config.task}-{seed}"
    if calls:
        previous = len(list(Path(calls).glob(f"{tag}.*")))
        Path(calls, f"{tag}.{uuid.uuid4().hex}").write_text(str(threads))
        if fail and previous < fail.get(config.agent, 0):
            raise RuntimeError(f"injected crash of {tag}")
        if die and previous < die.get(config.agent, 0):
            os._exit(3)  # the worker dies as if killed (OOM killer, lost node)
    time.sleep(sleep)
    bonus = {"auxi_sac": 100.0, "curl_sac": 50.0, "pixel_sac": 0.0}[config.agent]
    steps = range(0, config.num_train_steps + 1, config.eval_freq)
    curve = tuple((s, bonus + s / 10 + 7 * seed) for s in steps)
    failed = None
    if config.agent in diverge:
        curve, failed = curve[:2], "diverged: non-finite critic_loss at env step 1000"
    returns = [r for _, r in curve]
    result = types.SimpleNamespace(curve=curve, approx_aulc=sum(returns) / len(returns),
                                   final_return=returns[-1], wall_s=sleep, train_s=sleep,
                                   failed=failed, run_dir=str(run_dir))
    if run_dir is not None:  # the files rl.train writes there
        Path(run_dir).mkdir(parents=True)
        Path(run_dir, "eval.csv").write_text("env_step,episode_return\n" +
                                             "".join(f"{s},{r}\n" for s, r in curve))
        Path(run_dir, "result.json").write_text(json.dumps(vars(result)))
    return result


def fake_probe(config, members=1):
    """The start-up probe's stand-in: runs of fake_train take no time."""
    from rl.probe import StepTimes

    return StepTimes(setup_s=0.5, env_s=0.0, act_s=0.0, update_s=0.0, episode_steps=0)


def _plan(argv: list[str]) -> ev.Plan:
    parser = evaluate.build_parser()
    return evaluate.plan_from_args(parser.parse_args(argv), "--baselines" in " ".join(argv))


def _population(folder: Path, rows: list[tuple[str, str, float]]) -> Path:
    """A hand-made population.csv (interfaces.md columns): (genome, status, fitness)."""
    from spaces import Genome

    folder.mkdir(parents=True)
    columns = ["id", "genome", *named("a2-winner").to_flags(), "generation", "parents",
               "operator", "status", "reject_reason", "fitness", "final_return", "seeds",
               "steps", "wall_s", "worker", "error"]
    with open(folder / "population.csv", "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        for text, status, fitness in rows:
            g = Genome.parse(text)
            w.writerow({"id": g.id, "genome": str(g), **g.to_flags(), "generation": 0,
                        "parents": "", "operator": "fresh", "status": status,
                        "fitness": "" if math.isnan(fitness) else fitness, "seeds": "1"})
    return folder


# ----------------------------------------------------------------------- the plan
def test_default_plan_is_the_papers_table():
    plan = _plan(["--loss", "a2-winner"])
    assert [l.label for l in plan.losses] == ["a2-winner", "SAC", "CURL"]
    assert [l.agent for l in plan.losses] == ["auxi_sac", "pixel_sac", "curl_sac"]
    assert plan.tasks == ev.PAPER_TASKS and plan.seeds == (1, 2, 3, 4, 5)
    assert len(plan.runs) == 3 * 6 * 5 and len({r.key for r in plan.runs}) == 90
    for run in plan.runs:
        c = run.config
        assert (c.encoder_type, c.num_train_steps, c.seed, c.task) == ("pixel", 500_000, run.seed, run.task)
        # checkpoints at every multiple of eval_freq: 100k and 500k are among them
        every = c.eval_every_agent_steps * c.action_repeat
        assert 100_000 % every == 0 and 500_000 % every == 0
    assert plan.runs[0].config.genome == named("a2-winner")
    assert [r.seed for r in plan.runs[:18]] == [1] * 18  # seed-major: every loss early


def test_training_flags_pass_through_and_genome_forms():
    plan = _plan(MUST_SHOW + FAST + ["--auxi_ema", "--baselines", "sac",
                                     "--genome", "k1 s10/a1/r0 > s01/a0/r0 mse", "--seeds", "3,7"])
    assert [l.label for l in plan.losses] == ["a2-winner", "forward-dynamics", "SAC"]
    c = plan.runs[0].config
    assert (c.batch_size, c.hidden_dim, c.num_eval_episodes, c.auxi_ema) == (64, 64, 1, False)
    assert (c.encoder_hidden_size, c.num_layers, c.init_steps, c.action_repeat) == (40, 1, 100, 8)
    assert plan.seeds == (3, 7) and len(plan.runs) == 3 * 2
    # the A2LS flags of the README give the same genome: evaluated once, named
    flags = ("--auxi_pred_horizon 4 --auxi_pred_input_s 1000 --auxi_pred_input_a 1111 "
             "--auxi_pred_input_r 1101 --auxi_pred_input_s_ 0 --auxi_pred_output_s 0111 "
             "--auxi_pred_output_a 0000 --auxi_pred_output_r 0000 --auxi_pred_output_s_ 1 "
             "--similarity_metric mse").split()
    plan = _plan(flags + ["--loss", "a2-winner", "--baselines", "none", "--domain_name", "walker_walk"])
    assert [(l.label, l.genome) for l in plan.losses] == [("a2-winner", named("a2-winner"))]


def test_top_k_of_a_search(tmp_path):
    folder = _population(tmp_path / "search", [
        ("k1 s10/a1/r0 > s01/a0/r0 mse", "trained", 310.0),
        ("k1 s10/a0/r0 > s10/a0/r0 bilinear_inner_product+neg", "trained", 450.5),
        ("k1 s00/a1/r0 > s00/a0/r1 mse", "rejected", math.nan),
        ("k2 s100/a11/r00 > s011/a00/r00 nmse", "failed", 999.0),
        ("k2 s100/a11/r00 > s001/a00/r00 mse", "trained", 120.0)])
    top = losses.top_losses(folder, 2)
    assert [l.genome for l in top] == [named("curl-like"), named("forward-dynamics")]
    assert top[0].label == f"top1-{named('curl-like').id}" and "= curl-like" in top[0].origin


@pytest.mark.parametrize("argv, message", [
    (["--loss", "a2-winnr"], "--loss: unknown loss 'a2-winnr'"),
    (["--from", "{tmp}/nosuch"], "does not exist"),
    (["--from", "{tmp}/empty"], "holds no population.csv"),
    (["--genome", "k4 s1000/a1111 > s0111 mse"], "--genome: genome"),
    (["--genome", "k1 s00/a0/r0 > s01/a0/r0 mse"], "empty source"),
    (["--loss", "a2-winner", "--domain_name", "cheetah_rnu"], "--domain_name: unknown task 'cheetah_rnu'"),
    (["--loss", "a2-winner", "--batch_size", "0"], "--batch_size"),
    (["--loss", "a2-winner", "--seeds", "zero"], "--seeds"),
    (["--loss", "a2-winner", "--baselines", "dreamer"], "--baselines: unknown baseline 'dreamer'"),
    (["--domain_name", "cheetah_run"], "nothing to evaluate"),
    (["--loss", "a2-winner", "--cpus_per_run", "0"], "--cpus_per_run: expected a number > 0, got 0.0"),
    (["--loss", "a2-winner", "--gpus_per_run", "-1"], "--gpus_per_run: expected a number >= 0"),
    (["--loss", "a2-winner", "--max_failures", "-1"], "--max_failures: expected an integer >= 0"),
    (["--loss", "a2-winner", "--members_per_trial", "0"], "--members_per_trial: expected an integer >= 1"),
    (["--loss", "a2-winner", "--save_buffer"], "--save_buffer: a replay buffer"),
    (["--report", "--run", "{tmp}/empty"], "holds no evaluation (eval_config.json)"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    run = tmp_path / "e"
    code = evaluate.main([a.format(tmp=tmp_path) for a in argv] + ["--run", str(run)],
                         train_fn=fake_train)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("evaluate.py: error: ") and message in err[0], err
    assert not run.exists()


def test_bad_input_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "evaluate.py", "--loss", "nope", "--run", str(tmp_path / "e")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and "unknown loss 'nope'" in out.stderr
    assert not (tmp_path / "e").exists()


def test_a_used_folder_is_never_overwritten(tmp_path, capsys):
    run = tmp_path / "e"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert evaluate.main(["--loss", "a2-winner", "--run", str(run)], train_fn=fake_train) == 2
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_cohorts_with_a_loss_term_are_handed_out_first(tmp_path):
    """With seeds together, a loss's seeds go out in a row, the losses that train longest
    (an auxiliary or CURL term) first, so that on 2 slots the last to start is a short one."""
    plan = _plan(["--loss", "a2-winner", "--baselines", "sac,state-sac,curl", "--seeds", "2"]
                 + FAKE_FLAGS)
    session = EvalSession(plan, tmp_path / "e", Display(io.StringIO(), tty=False), True)
    handed = [session.next_job() for _ in plan.runs]
    assert [j.key.split("__")[0] for j in handed] == ["a2-winner"] * 2 + ["CURL"] * 2 + [
        "SAC"] * 2 + ["SAC-state"] * 2
    assert session.next_job() is None
    in_plan = EvalSession(plan, tmp_path / "e", Display(io.StringIO(), tty=False))
    assert [in_plan.next_job().key for _ in plan.runs] == [r.key for r in plan.runs]


# ------------------------------------------------------------- dispatch on Ray
@pytest.fixture
def ray_2cpus(ray_instance):
    """Ray with 2 CPUs (tests/conftest.py)."""


def run_plan(plan: ev.Plan, run: Path, train_fn, max_failures: int = 2) -> dict[str, dict]:
    """What evaluate.py does between its start-up lines and its report."""
    if not (run / store.CONFIG_FILE).is_file():
        store.write_config(run, plan, ["--test"], DispatchConfig().to_dict())
    session = EvalSession(plan, run, Display(io.StringIO(), tty=False))
    run_jobs(session, DispatchConfig(max_failures=max_failures), run / "tune", train_fn=train_fn)
    assert session.finished
    return store.load_records(run)


class TestOnRay:
    """Driver in this process, one shared 2-CPU Ray instance, shut down after the class."""

    def test_runs_are_retried_recorded_and_not_rerun(self, ray_2cpus, tmp_path):
        plan = _plan(["--loss", "a2-winner", "--seeds", "2"] + FAKE_FLAGS)
        calls = tmp_path / "calls"
        calls.mkdir()
        run = tmp_path / "e"
        train = lambda *a, **k: fake_train(*a, **k, calls=str(calls), fail={"curl_sac": 1},
                                           die={"auxi_sac": 1}, diverge=("pixel_sac",))
        records = run_plan(plan, run, train, max_failures=1)
        assert set(records) == {r.key for r in plan.runs} == {p.stem for p in (run / "records").glob("*.json")}
        curl = records["CURL__cartpole_swingup__s1"]
        assert curl["status"] == "done" and curl["attempts"] == 2  # crashed once, retried
        sac = records["SAC__cartpole_swingup__s2"]
        assert sac["status"] == "diverged" and sac["attempts"] == 1 and "critic_loss" in sac["failed"]
        a2 = records["a2-winner__cartpole_swingup__s2"]
        assert a2["status"] == "done" and a2["attempts"] == 2  # its worker died once
        assert a2["curve"] == [[0, 114.0], [1000, 214.0], [2000, 314.0], [3000, 414.0]]
        assert a2["genome"] == A2 and a2["final_return"] == 414.0 and a2["approx_aulc"] == 264.0
        assert len(list(calls.iterdir())) == 6 + 2 + 2
        assert {p.read_text() for p in calls.iterdir()} == {"1"}  # threads = cpus_per_run
        # the run's own files came back from the worker and were written by the driver
        shipped = run / "runs" / "a2-winner__cartpole_swingup__s2"
        assert (shipped / "eval.csv").read_text().startswith("env_step,")
        assert json.loads((shipped / "result.json").read_text())["run_dir"] == str(shipped)
        # everything recorded: a second pass trains nothing
        run_plan(plan, run, train)
        assert len(list(calls.iterdir())) == 10

    def test_a_run_that_always_crashes_is_recorded_as_error_and_resume_retries_it(self, ray_2cpus, tmp_path):
        plan = _plan(["--loss", "a2-winner", "--seeds", "1", "--baselines", "none"] + FAKE_FLAGS)
        calls = tmp_path / "calls"
        calls.mkdir()
        crash = lambda *a, **k: fake_train(*a, **k, calls=str(calls), fail={"auxi_sac": 99})
        records = run_plan(plan, tmp_path / "e", crash, max_failures=2)
        (record,) = records.values()
        assert record["status"] == "error" and record["attempts"] == 3
        assert "injected crash" in record["failed"] and len(list(calls.iterdir())) == 3
        records = run_plan(plan, tmp_path / "e", fake_train)
        assert [r["status"] for r in records.values()] == ["done"]

    def test_a_run_larger_than_the_cluster_is_bad_input(self, ray_2cpus, tmp_path, capsys):
        import ray

        run = tmp_path / "e"
        code = evaluate.main(["--loss", "a2-winner", "--cpus_per_run", "3", "--run", str(run)]
                             + FAKE_FLAGS, train_fn=fake_train)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1] == ("evaluate.py: error: --cpus_per_run: 3 is more than the 2 "
                                         "CPUs of the Ray cluster")
        assert not run.exists()
        assert ray.is_initialized()  # the instance it found is left to whoever started it


@pytest.mark.slow
def test_killed_evaluation_resumes_without_retraining(tmp_path):
    """kill -9 the driver after a run is recorded; --resume trains only the others."""
    run, calls = tmp_path / "e", tmp_path / "calls"
    calls.mkdir()
    argv = ["--loss", "a2-winner", "--seeds", "2", "--num_cpus", "1", "--run", str(run)] + FAKE_FLAGS
    driver = (f"import sys, functools; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
              "import evaluate, test_evaluate as t\n"
              f"train = functools.partial(t.fake_train, calls={str(calls)!r}, sleep=float(sys.argv[1]))\n"
              "sys.exit(evaluate.main(sys.argv[2:], train_fn=train, probe_fn=t.fake_probe))")
    proc = subprocess.Popen([sys.executable, "-c", driver, "2.0", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list((run / "records").glob("*.json")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_text() for p in (run / "records").glob("*.json")}
    assert 1 <= len(before) < 6
    trained_before = len(list(calls.iterdir()))
    out = subprocess.run([sys.executable, "-c", driver, "0", "--resume", "--run", str(run)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    after = {p.name: p.read_text() for p in (run / "records").glob("*.json")}
    assert len(after) == 6 and all(after[name] == text for name, text in before.items())
    trained = sorted(p.name.split(".")[0] for p in calls.iterdir())
    # every run trained to the end exactly once; at most the one killed mid-way twice
    assert len(trained) - trained_before == 6 - len(before)
    assert (run / "summary.md").is_file()


# --------------------------------------------------------------------- the report
def _records(plan: ev.Plan, last_step: int, every: int, skip=(), diverged=()) -> list[dict]:
    out = []
    for spec in plan.runs:
        if spec.key in skip:
            continue
        base = {"auxi_sac": 600.0, "curl_sac": 500.0, "pixel_sac": 100.0}[spec.agent]
        curve = [[s, base * s / last_step + spec.seed] for s in range(0, last_step + 1, every)]
        result = {"curve": curve, "approx_aulc": sum(r for _, r in curve) / len(curve),
                  "final_return": curve[-1][1], "wall_s": 1.0, "train_s": 1.0,
                  "failed": "diverged: x" if spec.key in diverged else None}
        outcome = Outcome(approx_aulc=result["approx_aulc"], final_return=result["final_return"],
                          curve=tuple(tuple(p) for p in curve), failed=result["failed"],
                          wall_s=1.0, train_s=1.0)
        out.append(store.make_record(spec, outcome))
    return out


def _write(run: Path, plan: ev.Plan, records: list[dict]) -> None:
    store.write_config(run, plan, ["--test"], DispatchConfig().to_dict())
    for r in records:
        store.write_record(run, r)


def test_report_on_pixels_puts_the_papers_numbers_beside_ours(tmp_path):
    plan = _plan(["--loss", "a2-winner", "--seeds", "3"])
    records = _records(plan, 500_000, 100_000, diverged={"CURL__walker_walk__s2"})
    _write(tmp_path, plan, records)
    paths = eval_report.write_report(tmp_path)
    assert {p.name for p in paths} >= {"curves.csv", "summary.csv", "comparison.csv", "summary.md",
                                       "cheetah_run.png", "ball_in_cup_catch.png"}
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["loss"] == "a2-winner" and r["task"] == "cheetah_run"
               and r["metric"] == "return@100000")
    assert (float(row["mean"]), float(row["std"]), row["n"]) == (122.0, 1.0, "3")  # 600/5 + seeds 1..3
    assert (row["paper"], row["paper_mean"], row["paper_std"]) == ("A2-winner", "449", "34")
    assert float(row["ci95_high"]) == pytest.approx(122 + 4.302653 / math.sqrt(3), rel=1e-5)
    walker = next(r for r in rows if r["loss"] == "CURL" and r["task"] == "walker_walk"
                  and r["metric"] == "return@500000")
    assert (walker["n"], walker["n_failed"], walker["paper_mean"]) == ("2", "1", "902")
    mean_row = next(r for r in rows if r["loss"] == "a2-winner" and r["task"] == eval_report.ALL
                    and r["metric"] == "return@100000")
    assert float(mean_row["paper_mean"]) == pytest.approx(714.33, abs=0.01)
    md = (tmp_path / "summary.md").read_text()
    assert "## Return at 100k env steps" in md and "## Return at 500k env steps" in md
    assert "A2-winner (paper, pixels)" in md and "Image SAC (paper, pixels)" in md
    assert "449 ± 34" in md and "518 ± 28" in md and "CURL__walker_walk__s2: diverged" in md
    with open(tmp_path / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert list(curves[0]) == ["loss", "agent", "task", "seed", "env_step", "return"]
    assert len(curves) == len(records) * 6
    with open(tmp_path / "comparison.csv") as f:
        comp = list(csv.DictReader(f))
    first = next(c for c in comp if c["baseline"] == "SAC" and c["task"] == "cheetah_run"
                 and c["metric"] == "final_return")
    assert float(first["mean_diff"]) == pytest.approx(500.0) and float(first["welch_p"]) < 1e-6
    assert any(c["task"] == eval_report.ALL for c in comp)


def test_report_of_a_short_state_run_names_its_step_and_shows_no_paper_numbers(tmp_path):
    plan = _plan(["--loss", "a2-winner", "--seeds", "2"] + FAKE_FLAGS)
    _write(tmp_path, plan, _records(plan, 3000, 1000, skip={"SAC__cartpole_swingup__s2"}))
    assert evaluate.main(["--report", "--run", str(tmp_path)]) == 0  # rebuilds from records
    md = (tmp_path / "summary.md").read_text()
    assert "Return at 3000 env steps (the last checkpoint at or before 100k)" in md
    assert "paper, pixels" not in md and "pixel observations" in md
    assert "5 of 6 planned runs recorded" in md
    with open(tmp_path / "summary.csv") as f:
        metrics = {r["metric"] for r in csv.DictReader(f)}
    assert metrics == {"return@3000", "aulc"}


# ------------------------------------------------------- end to end, real training
def _evaluate(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@needs_real_train
def test_must_show_command_trains_and_reports(tmp_path):
    """The issue's command with real training (CI-sized networks) to its report, the seeds
    of each loss as one cohort trial: every run recorded, with the run folders shipped back
    from the workers, and the report names a2-winner, SAC and CURL. (Killed and resumed: test_killed_evaluation_resumes_without_
    retraining above, and the pre-layout fixture folder in tests/test_compat.py.)"""
    run = tmp_path / "e"
    args = MUST_SHOW + FAST + ["--num_train_steps", "1600", "--eval_freq", "800", "--run", str(run),
                               "--members_per_trial", "2", "--quiet"]
    out = _evaluate(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (run / "records").glob("*.json")]
    assert len(records) == 6
    assert json.loads((run / "eval_config.json").read_text())["argv"] == args
    # --members_per_trial 2: each loss's two seeds trained as one cohort (rl.cohort.train_cohort)
    # in one worker process, ending together
    for loss in ("a2-winner", "SAC", "CURL"):
        pair = [r for r in records if r["loss"] == loss]
        assert len(pair) == 2 and pair[0]["worker"] == pair[1]["worker"], loss
        assert abs(pair[0]["wall_s"] - pair[1]["wall_s"]) < 0.5, loss
    for name in ("curves.csv", "summary.csv", "comparison.csv", "summary.md",
                 "plots/cartpole_swingup.png"):
        assert (run / name).is_file(), name
    for key in ("a2-winner__cartpole_swingup__s1", "SAC__cartpole_swingup__s2"):
        assert {p.name for p in (run / "runs" / key).iterdir()} >= {
            "config.json", "meta.json", "eval.csv", "train.csv", "result.json"}
    with open(run / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["loss"] for r in rows} == {"a2-winner", "SAC", "CURL"}
    assert {r["metric"] for r in rows} == {"return@1600", "aulc"}
    assert all(r["n"] == "2" and math.isfinite(float(r["mean"])) for r in rows)
    with open(run / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert sorted({int(r["env_step"]) for r in curves}) == [0, 800, 1600]
    assert len(curves) == 6 * 3
    md = (run / "summary.md").read_text()
    assert "| cartpole_swingup |" in md and "a2-winner | SAC |" in md


def test_top_two_of_a_search_folder(tmp_path, capsys, ray_instance):
    folder = _population(tmp_path / "search", [
        ("k1 s10/a1/r0 > s01/a0/r0 mse", "trained", 310.0),
        ("k1 s10/a0/r0 > s10/a0/r0 bilinear_inner_product+neg", "trained", 450.5),
        ("k2 s100/a11/r00 > s001/a00/r00 mse", "trained", 120.0)])
    args = ["--from", str(folder), "--top", "2", "--baselines", "none", "--seeds", "1",
            "--domain_name", "cartpole_swingup", "--encoder_type", "ofe", "--num_train_steps", "1000",
            "--init_steps", "100", "--eval_freq", "1000", "--run", str(tmp_path / "e"), "--quiet",
            "--num_cpus", "2"]
    assert evaluate.main(args + FAST, train_fn=fake_train, probe_fn=fake_probe) == 0, \
        capsys.readouterr().err
    records = store.load_records(tmp_path / "e")
    assert sorted(r["genome"] for r in records.values()) == sorted(
        [str(named("curl-like")), str(named("forward-dynamics"))])
    assert all(r["status"] == "done" for r in records.values())
    assert {r["loss"] for r in records.values()} == {
        f"top1-{named('curl-like').id}", f"top2-{named('forward-dynamics').id}"}


# ---------------------------------------------------------------- cohort trials
def test_seeds_of_a_loss_train_as_one_cohort_trial_and_resume_per_member(tmp_path, capsys,
                                                                          ray_instance):
    """--members_per_trial 3: each loss's 3 seeds are one Tune trial (2 trials for 6 runs),
    every member recorded with its own run folder; a member whose record is lost is trained
    again alone on --resume, and no other."""
    run, calls = tmp_path / "e", tmp_path / "calls"
    calls.mkdir()
    train = functools.partial(fake_train, calls=str(calls))
    args = ["--loss", "a2-winner", "--baselines", "sac", "--seeds", "1,2,3",
            "--members_per_trial", "3", "--num_cpus", "2", "--run", str(run)] + FAKE_FLAGS
    assert evaluate.main(args, train_fn=train, probe_fn=fake_probe) == 0, capsys.readouterr().err
    records = store.load_records(run)
    assert len(records) == 6 and all(r["status"] == "done" for r in records.values())
    assert all((run / "runs" / key / "eval.csv").is_file() for key in records)
    trials = [p for p in run.rglob("trial_*") if p.is_dir()]
    assert len(trials) == 2, trials
    assert json.loads((run / "eval_config.json").read_text())["dispatch"]["members_per_trial"] == 3
    lost = "SAC__cartpole_swingup__s2"
    (run / "records" / f"{lost}.json").unlink()
    assert evaluate.main(["--resume", "--run", str(run), "--quiet"], train_fn=train,
                         probe_fn=fake_probe) == 0
    counts = {}
    for path in calls.iterdir():
        tag = path.name.split(".")[0]
        counts[tag] = counts.get(tag, 0) + 1
    assert counts.pop("pixel_sac-cartpole_swingup-2") == 2 and set(counts.values()) == {1}
    assert store.load_records(run)[lost]["status"] == "done"
