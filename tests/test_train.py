"""rl.train.train: the train-a-candidate function the search and evaluate.py call."""
import json
import math

import pandas as pd
import pytest
import torch

import rl.train as rl_train
from rl.config import TrainConfig
from spaces import named

TINY = TrainConfig(domain_name="cartpole_swingup", encoder_type="ofe", encoder_hidden_size=16,
                   num_layers=1, agent="auxi_sac", num_train_steps=1600, init_steps=50,
                   eval_freq=800, num_eval_episodes=1, batch_size=16, hidden_dim=32,
                   replay_buffer_capacity=2000, seed=7)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_same_seed_twice_gives_identical_evaluation_returns():
    seen = []
    a = rl_train.train(TINY, threads=1, on_checkpoint=seen.append)
    assert seen == [a.curve[:1], a.curve[:2], a.curve]  # the curve so far, after each evaluation
    assert a.env_steps == 1600
    b = rl_train.train(TINY, threads=1)
    assert a.failed is None and b.failed is None
    assert [s for s, _ in a.curve] == [0, 800, 1600]
    assert a.curve == b.curve
    c = rl_train.train(TINY.replace(seed=8), threads=1)
    assert c.curve != a.curve  # the seed matters


def test_result_and_run_folder(tmp_path):
    result = rl_train.train(TINY.replace(genome=named("spr-like"), save_model=True,
                                         save_buffer=True), tmp_path / "r",
                            threads=1)
    assert result.approx_aulc == pytest.approx(sum(r for _, r in result.curve) / len(result.curve))
    assert result.final_return == result.curve[-1][1]
    assert 0 < result.train_s <= result.wall_s
    evals = pd.read_csv(tmp_path / "r" / "eval.csv")
    assert list(evals.env_step) == [s for s, _ in result.curve]
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["genome_canonical"] == str(named("spr-like"))
    assert config["action_repeat"] == 8 and config["critic_lr"] == 1e-3
    train = pd.read_csv(tmp_path / "r" / "train.csv")
    assert {"episode_return", "critic_loss", "aux_loss", "q_mean"} <= set(train.columns)
    assert sorted(p.name for p in (tmp_path / "r" / "model").iterdir())[0].startswith("agent_")
    import numpy as np
    buffer = np.load(tmp_path / "r" / "buffer" / "replay.npz")
    assert buffer["frames"].shape[1:] == (5,) and len(buffer["action"]) == len(buffer["frames"]) > 0


def test_a_diverging_run_ends_with_a_reason_not_a_crash(monkeypatch):
    real_make_agent = rl_train.make_agent

    def make_exploding_agent(*args, **kwargs):
        agent = real_make_agent(*args, **kwargs)
        real_update = agent.update

        def update(replay, step, diagnostics=True):
            metrics = real_update(replay, step, diagnostics)
            return {**metrics, "critic_loss": math.nan} if step >= 60 else metrics

        agent.update = update
        return agent

    monkeypatch.setattr(rl_train, "make_agent", make_exploding_agent)
    result = rl_train.train(TINY, threads=1)
    assert result.failed == "diverged: non-finite critic_loss at env step 480"
    assert result.env_steps == 480
    assert [s for s, _ in result.curve] == [0]  # what was evaluated before is kept


def test_bad_config_raises_value_error_naming_the_flag():
    with pytest.raises(ValueError, match="--domain_name"):
        rl_train.train(TINY.replace(domain_name="cartpole_fly"))
    with pytest.raises(ValueError, match="--num_train_steps"):
        rl_train.train(TINY.replace(num_train_steps=-1))


def test_config_round_trips_through_its_json_dict():
    config = rl_train.prepare(TINY.replace(genome=named("a2-winner-v"), auxi_ema=False))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and str(again.genome) == str(named("a2-winner-v"))
