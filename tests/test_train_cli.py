"""train.py end to end: every README command with a tiny budget, and bad input."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [line.split(" ", 2)[2] for line in
            (ROOT.parent / "shared" / "seed" / "commands.txt").read_text().splitlines()
            if line.strip()] if (ROOT.parent / "shared" / "seed" / "commands.txt").exists() else []
# The README's commands, kept here too so the suite runs where shared/ is absent.
README_COMMANDS = [
    "--domain_name cheetah_run --encoder_type pixel --agent auxi_sac --auxi_pred_horizon 4 --auxi_pred_input_s 1000 --auxi_pred_input_a 1111 --auxi_pred_input_r 1101 --auxi_pred_input_s_ 0 --auxi_pred_output_s 0111 --auxi_pred_output_a 0000 --auxi_pred_output_r 0000 --auxi_pred_output_s_ 1 --similarity_metric mse",
    "--domain_name cheetah_run --encoder_type ofe --encoder_hidden_size 40 --num_layers 1 --agent auxi_sac --auxi_pred_horizon 4 --auxi_pred_input_s 1000 --auxi_pred_input_a 1111 --auxi_pred_input_r 1101 --auxi_pred_input_s_ 0 --auxi_pred_output_s 0111 --auxi_pred_output_a 0000 --auxi_pred_output_r 0000 --auxi_pred_output_s_ 1 --similarity_metric mse",
    "--domain_name cheetah_run --encoder_type pixel --agent auxi_sac --auxi_pred_horizon 9 --auxi_pred_input_s 101000001 --auxi_pred_input_a 111111011 --auxi_pred_input_r 000110001 --auxi_pred_input_s_ 0 --auxi_pred_output_s 010100100 --auxi_pred_output_a 000010000 --auxi_pred_output_r 000000000 --auxi_pred_output_s_ 1 --similarity_metric mse",
    "--domain_name cheetah_run --encoder_type ofe --encoder_hidden_size 40 --num_layers 1 --agent auxi_sac --auxi_pred_horizon 9 --auxi_pred_input_s 101000001 --auxi_pred_input_a 111111011 --auxi_pred_input_r 000110001 --auxi_pred_input_s_ 0 --auxi_pred_output_s 010100100 --auxi_pred_output_a 000010000 --auxi_pred_output_r 000000000 --auxi_pred_output_s_ 1 --similarity_metric mse",
    "--domain_name cheetah_run --encoder_type pixel --agent pixel_sac",
    "--domain_name cheetah_run --encoder_type mlp --encoder_hidden_size 40 --num_layers 1 --agent pixel_sac",
    "--domain_name cheetah_run --encoder_type ofe --encoder_hidden_size 40 --num_layers 1 --agent pixel_sac",
    "--domain_name cheetah_run --encoder_type pixel --agent curl_sac",
    "--domain_name cheetah_run --encoder_type mlp --encoder_hidden_size 40 --num_layers 1 --agent curl_sac",
    "--domain_name cheetah_run --encoder_type ofe --encoder_hidden_size 40 --num_layers 1 --agent curl_sac",
]
# A tiny budget appended to each command: 10 updates past the warm-up, 2 evaluations of one
# episode each, shortened by an action repeat of 20 (50 agent steps: renders, ~45 ms each on
# this CPU at 100 px, are most of a pixel run; at 56 px a run costs ~20% less).
TINY = ("--num_train_steps 800 --action_repeat 20 --init_steps 30 --eval_freq 800 "
        "--num_eval_episodes 1 --batch_size 8 --hidden_dim 32 --replay_buffer_capacity 1000 "
        "--pre_transform_image_size 56 --image_size 48 --seed 3 --quiet")


def run_train(args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *shlex.split(args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_readme_commands_are_the_ones_in_shared_seed():
    if not COMMANDS:
        pytest.skip("shared/seed/commands.txt is not beside this checkout")
    assert COMMANDS == README_COMMANDS


@pytest.mark.slow
@pytest.mark.parametrize("command", README_COMMANDS, ids=[
    "a2winner-pixel", "a2winner-ofe", "a2winnerv-pixel", "a2winnerv-ofe", "sac-pixel", "sac-mlp",
    "sac-ofe", "curl-pixel", "curl-mlp", "curl-ofe"])
def test_every_readme_command_trains(command, tmp_path, capsys, monkeypatch):
    """train.py's main in this process (the command line itself: the first command, and
    the tests below, run it as a program)."""
    args = f"{command} {TINY} --run {tmp_path / 'run'}"
    if command == README_COMMANDS[0]:
        proc = run_train(args, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        from rl.cli import main

        monkeypatch.chdir(tmp_path)
        assert main(shlex.split(args)) == 0, capsys.readouterr().err[-3000:]
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["domain_name"] == "cheetah_run" and config["action_repeat"] == 20
    meta = json.loads((run / "meta.json").read_text())
    assert "torch" in meta["versions"]
    evals = pd.read_csv(run / "eval.csv")
    assert list(evals.env_step) == [0, 800]
    result = json.loads((run / "result.json").read_text())
    assert result["failed"] is None
    assert result["approx_aulc"] == pytest.approx(evals.episode_return.mean())
    # cheetah episodes last 50 agent steps here: none ended, the file holds just its header
    assert "episode_return" in pd.read_csv(run / "train.csv").columns


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("command", [README_COMMANDS[i] for i in (0, 1, 4, 7)],
                         ids=["a2winner-pixel", "a2winner-ofe", "sac-pixel", "curl-pixel"])
def test_readme_commands_train_on_cuda(command, tmp_path):
    """The GPU path end to end (device placement, crops cut on the device, fused Adam)."""
    proc = run_train(f"{command} {TINY} --device cuda --run {tmp_path / 'run'}", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["failed"] is None
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["device"].startswith("cuda")


@pytest.mark.parametrize("args,flag", [
    ("--auxi_pred_input_s 10x0", "--auxi_pred_input_s"),
    ("--auxi_pred_input_a 111", "--auxi_pred_input_a"),
    ("--similarity_metric l2", "--similarity_metric"),
    ("--domain_name cheetah_fly", "--domain_name"),
    ("--domain_name nosuchdomain_run", "--domain_name"),
    ("--encoder_type resnet", "--encoder_type"),
    ("--agent dqn", "--agent"),
    ("--num_train_steps -5", "--num_train_steps"),
    ("--batch_size 0", "--batch_size"),
    ("--auxi_pred_input_s 0000 --auxi_pred_input_a 0000 --auxi_pred_input_r 0000", "--auxi_pred"),
    ("--auxi_pred_output_s 0000 --auxi_pred_output_s_ 0", "--auxi_pred"),
    ("--num_train_steps ten", "--num_train_steps"),
    ("--use_action_embedding_for_Q", "--use_action_embedding_for_Q"),  # needs --action_embedding
])
def test_bad_input_is_one_line_exit_2_and_no_run_folder(args, flag, tmp_path, capsys, monkeypatch):
    """train.py's main in this process (the command line itself: the test below)."""
    from rl.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(shlex.split(f"{args} --run {tmp_path / 'run'}"))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert flag in lines[0] and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "results").exists()


def test_a_loss_the_search_would_reject_trains_with_a_warning(tmp_path):
    # no state in the source: useless for the search, but an ablation may ask for it
    args = ("--domain_name cartpole_swingup --encoder_type ofe --encoder_hidden_size 16 --num_layers 1 "
            "--auxi_pred_horizon 1 --auxi_pred_input_s 0 --auxi_pred_input_a 1 --auxi_pred_input_r 0 "
            "--auxi_pred_output_s 0 --auxi_pred_output_s_ 1 --auxi_pred_output_a 0 --auxi_pred_output_r 0 "
            f"--num_train_steps 400 --init_steps 20 --eval_freq 400 {TINY.split('--seed')[0]} "
            f"--eval_freq 400 --quiet --run {tmp_path / 'run'}")
    proc = run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: the search would reject this loss (no state in the source)" in proc.stderr


def test_existing_run_folder_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.csv").write_text("precious\n")
    proc = run_train(f"--domain_name cartpole_swingup --run {run}", tmp_path, timeout=120)
    assert proc.returncode == 2 and "--run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (run / "eval.csv").read_text() == "precious\n"
