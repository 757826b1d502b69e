"""search.py end to end: the smoke preset on real Ray + real training, bad input (one line,
exit 2, nothing overwritten), planted fitness without Ray, presets, the progress display."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.commands.search_cli import main
from search.runs.display import Display, Eta, Snapshot
from search.commands.presets import PRESETS, SearchSetup, build_setup

REPO = Path(__file__).resolve().parent.parent


def read_rows(run: Path) -> list[dict]:
    with open(run / "population.csv", newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_smoke_preset_runs_every_phase_on_ray_workers(tmp_path):
    """The real command with real training: candidates stopped at rungs, finalist seeds,
    the held-out verdict, the report opening with it."""
    run = tmp_path / "x"
    done = subprocess.run([sys.executable, "search.py", "--preset", "smoke", "--run", str(run)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    print(done.stdout[-4000:], done.stderr[-4000:])
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_rows(run)
    settled = [r for r in rows if r["status"] in ("trained", "stopped")]
    assert len(settled) == 5 and len({r["id"] for r in settled}) == 5
    trained = [r for r in settled if r["status"] == "trained"]
    stopped = [r for r in settled if r["status"] == "stopped"]
    assert stopped and all(int(r["steps"]) == int(r["stopped_at"]) < 1600 for r in stopped)
    assert all(len(r["seeds"].split(";")) == 3 and int(r["steps"]) == 1600 for r in trained)
    ids = {r["id"] for r in rows}
    assert {int(r["generation"]) for r in settled} >= {0, 1}
    children = [r for r in settled if int(r["generation"]) > 0]
    assert children and all(r["parents"] and set(r["parents"].split(";")) <= ids for r in children)
    driver_pid = json.loads((run / "meta.json").read_text())["sessions"][0]["pid"]
    for r in settled:
        for worker in r["worker"].split(";"):
            node, pid = worker.rsplit(":", 1)
            assert len(node) == 56 and int(pid) != driver_pid  # a Ray node id (hex) and a pid
    with open(run / "curves.csv", newline="") as f:
        curves = list(csv.DictReader(f))
    assert {c["id"] for c in curves} == {r["id"] for r in settled}
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "smoke" and config["search"]["budget"] == 5
    assert config["train"]["domain_name"] == "cartpole_swingup" and config["train"]["action_repeat"] == 8
    verdict = list((run / "verdict" / "records").glob("*.json"))
    assert len(verdict) == 4 and (run / "verdict" / "names.json").is_file()
    # Ray/Tune stayed silent: only our lines (one per event, stdout is not a terminal).
    for noise in ("Trial status", "View detailed results", "╭", "(raylet)", "INFO"):
        assert noise not in done.stdout + done.stderr
    assert "candidates 5/5" in done.stdout and "runs 4/4" in done.stdout and "done:" in done.stdout
    assert "eta ?" not in done.stdout   # every status line has an estimate
    # what it starts, and an estimate from a probe on a worker, before the first result
    first_result = done.stdout.index("candidates 0/5")
    assert 0 <= done.stdout.index("selection: 5 genomes; the first 2 train to the top") < first_result
    assert 0 <= done.stdout.index("verdict: the top 1 named") < first_result
    assert 0 <= done.stdout.index("probe on a worker with a trial's resources, 2 at once as runs "
                                  "will be") < first_result
    assert "(loopback only, token authentication on, no dashboard)" in done.stdout
    report = subprocess.run([sys.executable, "search.py", "report", str(run), "--top", "3"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert report.stdout.startswith("Verdict on held-out seeds")
    assert (run / "report" / "verdict.md").is_file() and (run / "report" / "protocol.md").is_file()


# ---------------------------------------------------------------- bad input
def one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("search.py") and match in err, err


@pytest.fixture
def planted_run(tmp_path, capsys):
    run = tmp_path / "planted"
    argv = ["--preset", "smoke", "--fitness", "planted:a2-winner", "--budget", "12",
            "--population", "6", "--run", str(run)]
    assert main(argv) == 0
    capsys.readouterr()
    return run, argv


@pytest.mark.parametrize("argv, match", [
    (["--preset", "huge"], "--preset: unknown preset 'huge'"),
    (["--preset", "smoke", "--strategy", "annealing"], "--strategy"),
    (["--preset", "smoke", "--budget", "many"], "--budget: invalid int value"),
    (["--preset", "smoke", "--budget", "0"], "--budget"),
    (["--preset", "smoke", "--population", "1"], "--population"),
    (["--preset", "smoke", "--cpus_per_candidate", "-1"], "--cpus_per_candidate: expected a number > 0"),
    (["--preset", "smoke", "--cpus_per_candidate", "0"], "--cpus_per_candidate: expected a number > 0"),
    (["--preset", "smoke", "--gpus_per_candidate", "-1"], "--gpus_per_candidate: expected a number >= 0"),
    (["--preset", "smoke", "--num_cpus", "0"], "--num_cpus: expected an integer >= 1"),
    (["--preset", "smoke", "--cpus_per_candidate", "3", "--num_cpus", "2"],
     "--cpus_per_candidate: 3 is more than the 2 CPUs of the Ray cluster"),
    (["--preset", "smoke", "--max_failures", "-2"], "--max_failures"),
    (["--preset", "smoke", "--members_per_trial", "0"], "--members_per_trial: expected an integer >= 1"),
    (["--preset", "smoke", "--domain_name", "cheetah_sprint"], "--domain_name"),
    (["--preset", "smoke", "--batch_size", "0"], "--batch_size"),
    (["--preset", "smoke", "--encoder_type", "resnet"], "--encoder_type"),
    (["--preset", "smoke", "--fitness", "oracle"], "--fitness"),
    (["--preset", "smoke", "--fitness", "planted:no-such-loss"], "--fitness"),
    (["--preset", "smoke", "--seed_losses", "a2-winner,nope"], "--seed_losses: unknown loss 'nope'"),
    (["--preset", "smoke", "--detach_encoder", "maybe"], "--detach_encoder"),
    (["--preset", "smoke", "--address", "127.0.0.1:1"], "--address: no Ray cluster answers"),
    (["--nonsense"], "unrecognized arguments"),
    (["report"], "the following arguments are required: run"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, match, request):
    import ray

    if "--address" in argv and ray.is_initialized():
        ray.shutdown()                      # an instance of this process would be used instead
    elif "--cpus_per_candidate" in argv and "3" in argv:
        request.getfixturevalue("ray_instance")   # the 2 CPUs it is checked against
    one_line_error(capsys, argv + (["--run", str(tmp_path / "r")] if argv[0] != "report" else []), match)
    assert not (tmp_path / "r").exists()


def test_existing_runs_are_never_overwritten(capsys, tmp_path, planted_run):
    run, argv = planted_run
    before = snapshot(run)
    one_line_error(capsys, argv, "--resume")                       # same config: use --resume
    one_line_error(capsys, [a if a != "12" else "13" for a in argv], "another config")
    one_line_error(capsys, ["--resume", str(run), "--budget", "20"], "--budget cannot be given")
    one_line_error(capsys, argv + ["--resume", str(run)], "not both")
    one_line_error(capsys, ["--resume", str(tmp_path / "nothing")], "not a search run")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    one_line_error(capsys, ["--resume", str(tmp_path / "junk")], "not a search run")
    one_line_error(capsys, argv[:-1] + [str(tmp_path / "junk")], "not a search run")
    one_line_error(capsys, ["report", str(tmp_path / "nothing")], "nothing")
    assert snapshot(run) == before


def test_planted_fitness_runs_in_the_driver_without_ray(planted_run, capsys):
    run, _ = planted_run
    rows = read_rows(run)
    assert sum(r["status"] == "trained" for r in rows) == 12
    assert "ray:" not in (run / "events.log").read_text()     # neither started nor joined
    assert json.loads((run / "config.json").read_text())["fitness"].startswith("planted:k4 ")
    assert main(["--resume", str(run)]) == 0                       # a finished run: nothing to do
    assert "already finished" in capsys.readouterr().out
    assert main(["report", str(run), "--top", "2"]) == 0


def test_no_preset_picks_one_by_hardware_and_says_so(tmp_path, capsys, monkeypatch):
    import search.commands.presets as presets

    monkeypatch.setattr(presets, "has_gpu", lambda: False)
    assert main(["--fitness", "planted:curl-like", "--budget", "4", "--population", "4",
                 "--run", str(tmp_path / "auto")]) == 0
    out = capsys.readouterr().out
    assert "preset: cpu (no GPU found" in out
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["preset"] == "cpu"
    monkeypatch.setattr(presets, "has_gpu", lambda: True)
    assert presets.auto_preset()[0] == "paper"


# ---------------------------------------------------------------- presets
def test_presets_resolve_and_flags_override_them():
    smoke = build_setup("smoke")
    assert (smoke.engine.population, smoke.engine.budget) == (2, 5)
    assert (smoke.engine.rungs, smoke.engine.finalist_seeds, smoke.verdict.top) == ((800, 1200), 2, 1)
    assert (smoke.train.batch_size, smoke.train.hidden_dim, smoke.train.num_train_steps) == (64, 64, 1600)
    assert (smoke.train.init_steps, smoke.train.eval_freq, smoke.train.num_eval_episodes) == (100, 400, 1)
    assert smoke.train.encoder_type == "ofe" and smoke.train.encoder_hidden_size == 40
    cpu = build_setup("cpu")  # the paper's vector Cheetah-Run search
    assert (cpu.train.task, cpu.train.encoder_type, cpu.train.encoder_hidden_size,
            cpu.train.num_layers) == ("cheetah_run", "ofe", 40, 1)
    assert (cpu.train.batch_size, cpu.train.hidden_dim, cpu.train.num_train_steps) == (128, 256, 100_000)
    assert min(cpu.engine.rungs) >= 50_000 and cpu.verdict.seeds >= 5
    assert set(cpu.verdict.references) == {"sac", "state-sac", "a2-winner"}
    from search.evolution.engine import Engine
    sizes = Engine(cpu.engine).generation_sizes()                   # no last generation alone
    assert len(sizes) >= 2 and sizes[-1] == sizes[1], sizes
    paper = build_setup("paper")
    assert paper.train.from_pixels and paper.train.task == "cheetah_run"
    assert (paper.engine.population, paper.engine.survivor_fraction) == (100, 0.25)
    assert paper.train.batch_size == 512 and paper.train.hidden_dim == 1024
    assert paper.dispatch.gpus_per_trial == 0.25 and paper.engine.rungs == cpu.engine.rungs
    assert build_setup("smoke", fitness="planted:a2-winner").verdict.top == 0
    with pytest.raises(ValueError, match="--rungs: 900 is not an evaluation step"):
        build_setup("smoke", engine={"rungs": (900,)})
    cpu = build_setup("cpu", engine={"budget": 10}, train={"hidden_dim": 32},
                      dispatch={"cpus_per_trial": 2})
    assert (cpu.engine.budget, cpu.train.hidden_dim, cpu.dispatch.threads) == (10, 32, 2)
    again = SearchSetup.from_config(json.loads(json.dumps(cpu.to_config())))
    assert again == cpu
    assert set(PRESETS) == {"smoke", "cpu", "paper"}


# ---------------------------------------------------------------- display
class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_display_plain_lines_off_a_terminal():
    out, clock, log = io.StringIO(), Clock(), []
    display = Display(out, tty=False, log=log.append, now=clock, eta=Eta(run_s=None, slots=1, now=clock))
    display.eta.started("a")
    display.update(Snapshot(0, 4, 1, 0, 3, "candidates"), quiet=True)      # a start: no line
    clock.t = 60
    display.eta.finished("a")
    best = ("rejected 2", "best 12.5 (k1 s10/a1/r0 > s01/a0/r0 mse)")
    display.update(Snapshot(1, 4, 0, 0, 3, "candidates", best), "abc: fitness 12.5")
    lines = out.getvalue().splitlines()
    assert lines == ["[0:01:00] candidates 1/4 | running 0 | failed 0 | rejected 2 | best 12.5 "
                     "(k1 s10/a1/r0 > s01/a0/r0 mse) | eta 0:03:00 | abc: fitness 12.5"]
    assert "\r" not in out.getvalue() and log == ["abc: fitness 12.5"]


def test_an_eta_without_estimate_logs_why_once():
    class Broken:   # a forecast whose plays failed
        error = "KeyError: 'abc'"

        def seconds_left(self, jobs_left):
            return None

    out, log = io.StringIO(), []
    display = Display(out, tty=False, log=log.append, now=Clock(), eta=Broken())
    for event in ("a: fitness 1", "b: fitness 2"):
        display.update(Snapshot(0, 4, 1, 0, 3), event)
    assert out.getvalue().count("eta ?") == 2
    assert log == ["eta: no estimate (KeyError: 'abc')", "a: fitness 1", "b: fitness 2"]
    display.eta.error = "ValueError: x"
    display.update(Snapshot(0, 4, 1, 0, 3), "c: fitness 3")
    assert log[-2:] == ["eta: no estimate (ValueError: x)", "c: fitness 3"]


def test_display_redraws_one_line_on_a_terminal():
    out, clock = io.StringIO(), Clock()
    with Display(out, tty=True, now=clock, eta=Eta(run_s=20.0, slots=2, now=clock)) as display:
        display.eta.started("a")
        display.eta.started("b")
        display.update(Snapshot(0, 6, 2, 0, 4))
        clock.t = 10
        display.update(Snapshot(0, 6, 2, 0, 4), "x: fitness 3")
        display.update(Snapshot(1, 6, 1, 1, 4), "FAILED y: boom", important=True)
    text = out.getvalue()
    assert text.count("\r") >= 3 and text.endswith("\n")
    assert "FAILED y: boom\n" in text                               # kept above the status line
    assert "x: fitness 3" not in text                               # ordinary events only redraw
    assert "eta 0:00:50" in text    # probe: 20 s a run; 4 to start + 2 half done, 2 at a time


def test_eta_uses_the_probe_until_runs_finish_then_their_mean_duration():
    clock = Clock()
    eta = Eta(run_s=100.0, slots=2, now=clock)
    assert eta.seconds_left(4) == 200.0
    eta.started("a")
    clock.t = 30
    assert eta.seconds_left(4) == (4 * 100 + 70) / 2
    assert eta.finished("a") == 30
    assert eta.seconds_left(3) == 45.0                               # 3 runs of 30 s, 2 at a time
    assert Eta().seconds_left(3) is None                             # nothing known yet
    cohort = Eta(run_s=100.0, slots=2, now=clock)                    # 5 seeds in one trial:
    for key in "vwxyz":                                              # each 1/5 of one slot
        cohort.started(key, together=5)
    clock.t += 50
    assert cohort.finished("v") == 50 and cohort.per_job_s == 10
    assert cohort.seconds_left(5) == (5 * 10 + 0) / 2
    from search.runs.display import clock as text
    assert text(3 * 86400 + 3725) == "3d 1:02:05"


def test_a_result_line_waits_for_the_next_job_so_running_counts_it():
    """Off a terminal a result's line settles: it is printed at the next update (the job
    that takes the freed slot), with the counts then, or after settle_s at the latest."""
    out, clock = io.StringIO(), Clock()
    display = Display(out, tty=False, now=clock, eta=Eta(run_s=10.0, slots=2, now=clock))
    display.update(Snapshot(1, 4, 1, 0, 2, "candidates"), "abc: fitness 1", settle_s=30)
    assert out.getvalue() == ""
    display.update(Snapshot(1, 4, 2, 0, 1, "candidates"), quiet=True)   # the next job started
    assert out.getvalue().count("\n") == 1 and "running 2" in out.getvalue()
    assert out.getvalue().rstrip().endswith("abc: fitness 1")
    display.update(Snapshot(2, 4, 1, 0, 1, "candidates"), "def: fitness 2", settle_s=0.05)
    time.sleep(0.3)                                                      # nothing came: printed
    assert out.getvalue().count("\n") == 2 and "def: fitness 2" in out.getvalue()


def test_planted_status_counts_are_current(tmp_path, capsys):
    """The planted benchmark prints at most a line a second, each with fresh counts."""
    assert main(["--preset", "smoke", "--fitness", "planted:a2-winner", "--budget", "300",
                 "--population", "10", "--finalist_seeds", "0", "--rungs", "none",
                 "--run", str(tmp_path / "p")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[")]
    assert lines
    for line in lines:
        done = int(line.split("candidates ")[1].split("/")[0])
        generation = int(line.split("(gen ")[1].split(",")[0])
        # generation g starts after 10 + 8 (g - 1) genomes (10 a generation, 2 survive)
        assert done >= (10 + 8 * (generation - 1) if generation else 1), line
        assert "best -" not in line


def test_the_eta_counts_the_verdict_runs_still_to_train(tmp_path):
    """The status line's ETA covers the whole search: the selection's runs, the finalist
    seeds it expects, and the verdict's runs (none once the verdict is done)."""
    from search.commands.search_run import verdict_left
    from search.evolution.engine import Engine
    from search.runs.session import engine_snapshot

    setup = build_setup("smoke")
    engine = Engine(setup.engine)
    runs = (setup.verdict.top + len(setup.verdict.references)) * setup.verdict.seeds
    assert verdict_left(setup, tmp_path) == runs == 4
    assert verdict_left(build_setup("smoke", verdict={"top": 0}), tmp_path) == 0
    snap = engine_snapshot(engine, verdict_left(setup, tmp_path))
    assert snap.jobs_left == engine.jobs_left() + 4


def test_probes_of_one_config_are_averaged_field_by_field():
    from rl.probe import StepTimes
    from search.runs.probe import mean_times

    a = StepTimes(setup_s=2.0, env_s=0.001, act_s=0.002, update_s=0.010, episode_steps=125)
    b = StepTimes(setup_s=4.0, env_s=0.003, act_s=0.002, update_s=0.030, episode_steps=125)
    mean = mean_times([a, b])
    assert (mean.setup_s, mean.update_s, mean.episode_steps) == (3.0, pytest.approx(0.02), 125)


def test_a_message_comes_after_the_event_line_still_settling():
    out, clock = io.StringIO(), Clock()
    display = Display(out, tty=False, now=clock, eta=Eta(run_s=10.0, slots=2, now=clock))
    display.update(Snapshot(5, 5, 0, 0, 0, "candidates"), "last: fitness 1", settle_s=30)
    display.info("verdict: named last")
    lines = out.getvalue().splitlines()
    assert "candidates 5/5" in lines[0] and lines[0].endswith("last: fitness 1")
    assert lines[1] == "verdict: named last"
