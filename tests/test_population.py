"""Population training (rl.population, rl.cohort): each member of a batched population
computes what its lone agent computes, given the same initial parameters, batches and random
draws (losses, parameters, actions, gradients); a diverging member is dropped without
changing the others; the cohort loop trains each seed as ``rl.train.train`` does.

The update comparisons run in float64: in float32, Adam turns the rounding noise of
gradients whose true value is zero (the bias before the predictor's BatchNorm, and the
encoder's LayerNorm bias under the auxiliary loss, which BatchNorm makes shift-invariant)
into steps of up to the learning rate, so two correct float32 computations that merely sum
in another order drift apart by ~1e-3 within a few updates. In float64 that noise is ~1e-16
and members match their lone agents to ~1e-11 over 50 updates."""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from accelerators import devices
from rl import cohort as cohort_module
from rl import networks
from rl.agent import make_agent
from rl.cohort import train_cohort
from rl.config import TrainConfig, resolve
from rl.population import Population, make_population
from rl.replay import ReplayBuffer
from rl.train import train
from spaces import METRICS, named

torch.set_num_threads(1)

ACTIONS, OBS_DIM, RENDER, CROP, STACK, B, UPDATES = 3, 5, 20, 16, 3, 8, 50
A2 = named("a2-winner")


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


class Float64Windows:
    """A real replay whose windows come out in float64 (test only: pixels stay uint8)."""

    def __init__(self, replay: ReplayBuffer):
        self.replay = replay

    def sample(self, batch_size: int, horizon: int):
        w = self.replay.sample(batch_size, horizon)
        frames = w.frames if w.frames.dtype == np.uint8 else w.frames.astype(np.float64)
        return dataclasses.replace(w, frames=frames, action=w.action.astype(np.float64),
                                   reward=w.reward.astype(np.float64),
                                   not_done=w.not_done.astype(np.float64))


def replay(pixels: bool, render: int, seed: int):
    """A real replay of random data; windows in torch's default dtype (pixels: uint8)."""
    rng = np.random.default_rng(seed)
    frame = (3, render, render) if pixels else (OBS_DIM,)
    buffer = ReplayBuffer(200, frame, np.uint8 if pixels else np.float32, ACTIONS,
                          frame_stack=STACK if pixels else 1, seed=seed)

    def obs():
        if pixels:
            return rng.integers(0, 256, (3 * STACK, render, render), dtype=np.uint8)
        return rng.standard_normal(OBS_DIM).astype(np.float32)

    for i in range(60):
        if i % 20 == 0:
            buffer.start_episode(obs())
        buffer.add(rng.uniform(-1, 1, ACTIONS), float(rng.standard_normal()), obs(), False)
    return Float64Windows(buffer) if torch.get_default_dtype() == torch.float64 else buffer


def tiny_config(agent: str = "auxi_sac", encoder: str = "ofe", **changes) -> TrainConfig:
    pixels = encoder == "pixel"
    return resolve(TrainConfig(
        agent=agent, encoder_type=encoder, batch_size=B, hidden_dim=16, encoder_feature_dim=8,
        num_filters=4, encoder_hidden_size=8, num_layers=2 if pixels else 1,
        pre_transform_image_size=CROP if agent == "pixel_sac" else RENDER, image_size=CROP,
        frame_stack=STACK, **changes))


def members_and_lone(config: TrainConfig, seeds=(1, 2), device="cpu"):
    """A population of ``seeds`` and, per seed, a lone agent with the same initial parameters,
    its own replay and the state of the member's random stream (to run it on torch's global
    generator), plus the population's replays (equal contents, separate sampling state)."""
    pixels = config.encoder_type == "pixel"
    render = config.render_size
    shape = (3 * STACK, render, render) if pixels else (OBS_DIM,)
    population = make_population(config, shape, ACTIONS, torch.device(device), seeds)
    lone = []
    for seed, generator in zip(seeds, population.generators):
        torch.manual_seed(seed)
        agent = make_agent(config.replace(seed=seed), shape, ACTIONS, torch.device(device))
        lone.append([agent, replay(pixels, render, seed), generator.get_state()])
    return population, [replay(pixels, render, seed) for seed in seeds], lone


def lone_update(entry, step: int, diagnostics: bool = True) -> dict[str, float]:
    agent, lone_replay, state = entry
    torch.set_rng_state(state)  # the member's stream, on torch's global generator
    metrics = agent.update(lone_replay, step, diagnostics)
    entry[2] = torch.get_rng_state()
    return metrics


def assert_same_state(population: Population, lone, atol: float = 1e-8) -> None:
    for k, (agent, _, _) in enumerate(lone):
        mine, theirs = population.member_state_dict(k), agent.state_dict()
        assert mine.keys() == theirs.keys()
        for module, tensors in theirs.items():
            assert mine[module].keys() == tensors.keys()
            for key, value in tensors.items():
                got = mine[module][key]
                assert got.shape == value.shape, (module, key)
                assert torch.allclose(got.double(), value.double(), rtol=0, atol=atol), (k, module, key)


# (agent, encoder, flags, updates): every metric variant and agent over 50 updates; pixels
# and the other flags' wiring over 6 (three actor and target updates among them).
CASES = {f"states-{m}{'-neg' if n else ''}": ("auxi_sac", "ofe", {"genome": A2.replace(metric=m, negatives=n)},
                                             UPDATES) for m in METRICS for n in (False, True)}
CASES.update({
    "states-curl": ("curl_sac", "ofe", {}, UPDATES),
    "states-sac-mlp": ("pixel_sac", "mlp", {}, UPDATES),
    "pixels-curl": ("curl_sac", "pixel", {}, 6),
    "pixels-a2-winner": ("auxi_sac", "pixel", {}, 6),
    "pixels-sac": ("pixel_sac", "pixel", {}, 6),
    "states-mlp": ("auxi_sac", "mlp", {}, 6),
    "states-embeddings-q": ("auxi_sac", "ofe", {"action_embedding": True, "reward_embedding": True,
                                                "use_action_embedding_for_Q": True}, 6),
    "states-shared-window": ("auxi_sac", "ofe", {"shared_window": True}, 6),
    "states-no-ema": ("auxi_sac", "ofe", {"auxi_ema": False}, 6),
    "states-shared-no-ema": ("auxi_sac", "ofe", {"shared_window": True, "auxi_ema": False}, 6),
    "states-detached": ("auxi_sac", "ofe", {"detach_encoder": True,
                                            "update_encoder_with_actorloss": True}, 6),
    "pixels-shared-window": ("auxi_sac", "pixel", {"shared_window": True}, 6),
})


@pytest.mark.parametrize("case", list(CASES))
def test_each_member_matches_its_lone_agent(case, float64):
    agent, encoder, changes, updates = CASES[case]
    population, replays, lone = members_and_lone(tiny_config(agent, encoder, **changes))
    accuracy_agree = accuracy_seen = 0
    for step in range(updates):
        diagnostics = step % 10 == 0  # as log_interval asks for them; losses every update
        batched = population.update(replays, step, diagnostics)
        assert len(batched) == len(lone)
        for mine, entry in zip(batched, lone):
            theirs = lone_update(entry, step, diagnostics)
            assert mine.keys() == theirs.keys()
            for key, value in theirs.items():
                if key.endswith("accuracy"):  # top-1 of near-tied logits: may flip on rounding
                    accuracy_seen += 1
                    accuracy_agree += mine[key] == value
                else:
                    assert math.isclose(mine[key], value, rel_tol=1e-6, abs_tol=1e-9), (step, key)
    assert accuracy_agree >= 0.9 * accuracy_seen
    assert_same_state(population, lone)
    # The members really are different runs (own seeds, own data), not copies of one.
    first, second = (population.member_state_dict(k)["critic"]["q.w1"] for k in (0, 1))
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("encoder", ["ofe", "pixel"])
def test_members_get_their_own_gradients_summed_not_averaged(encoder, float64):
    """The summed loss gives member k exactly its lone loss's gradient (an average would give
    1/K of it), for the critic and the auxiliary loss."""
    population, replays, lone = members_and_lone(tiny_config("auxi_sac", encoder), seeds=(1, 2, 3))
    terms = population.representation_terms(replays)
    population._total(terms["loss_aux"]).backward()
    for k, (agent, lone_replay, state) in enumerate(lone):
        torch.set_rng_state(state)
        agent.representation_terms(lone_replay)["loss_aux"].backward()
        for module in ("encoder", "q"):
            for p_pop, p_lone in zip(getattr(population.critic, module).parameters(),
                                     getattr(agent.critic, module).parameters()):
                if p_lone.grad is None:
                    assert p_pop.grad is None
                    continue
                assert torch.allclose(p_pop.grad[k], p_lone.grad, rtol=1e-9, atol=1e-12)
        for p_pop, p_lone in zip(population.aux.parameters(), agent.aux.parameters()):
            assert torch.allclose(p_pop.grad[k], p_lone.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("encoder", ["ofe", "pixel"])
def test_batched_act_is_each_members_lone_act(encoder):
    population, replays, lone = members_and_lone(tiny_config("auxi_sac", encoder), seeds=(4, 5, 6))
    obs = np.stack([replays[k].sample(1, 1).obs(0)[0] for k in range(3)])
    mean = population.act(obs, sample=False)
    sampled = population.act(obs, sample=True)
    assert mean.shape == sampled.shape == (3, ACTIONS)
    for k, (agent, _, state) in enumerate(lone):
        assert np.allclose(mean[k], agent.act(obs[k], sample=False), atol=1e-6)
        torch.set_rng_state(state)  # the member's stream: the same policy noise
        assert np.allclose(sampled[k], agent.act(obs[k], sample=True), atol=1e-6)
    assert not np.allclose(sampled, mean)


@pytest.mark.parametrize("encoder", ["ofe", "pixel"])
def test_a_nan_member_is_dropped_and_the_others_do_not_change(encoder):
    """Float32, bitwise: member 1's NaN weights make its losses NaN; members 0 and 2 get the
    numbers they get beside a healthy member 1, then train on without it."""
    config = tiny_config("auxi_sac", encoder)
    poisoned, replays_p, _ = members_and_lone(config, seeds=(1, 2, 3))
    healthy, replays_h, _ = members_and_lone(config, seeds=(1, 2, 3))
    with torch.no_grad():
        poisoned.critic.q.w3[1].fill_(float("nan"))
    bad, good = poisoned.update(replays_p, 0), healthy.update(replays_h, 0)
    assert not math.isfinite(bad[1]["critic_loss"])
    assert all(math.isfinite(v) for m in (0, 2) for v in bad[m].values())
    assert [bad[0], bad[2]] == [good[0], good[2]]
    for population, replays in ((poisoned, replays_p), (healthy, replays_h)):
        population.keep([0, 2])
        del replays[1]
    assert poisoned.members == 2 and poisoned.log_alpha.shape == (2,)
    for step in range(1, 6):
        assert poisoned.update(replays_p, step) == healthy.update(replays_h, step)
    for k in range(2):
        mine, theirs = poisoned.member_state_dict(k), healthy.member_state_dict(k)
        assert all(torch.equal(mine[m][key], theirs[m][key]) for m in theirs for key in theirs[m])
    for group in poisoned.optimizers["critic"].param_groups:  # Adam's moments compacted too
        assert all(m.shape == p.shape for m, p in zip(group["exp_avgs"], group["params"]))


def test_member_state_loads_into_a_lone_agent_that_then_acts_alike():
    config = tiny_config("auxi_sac", "ofe")
    population, replays, lone = members_and_lone(config, seeds=(1, 2))
    for step in range(3):
        population.update(replays, step)
    agent = lone[1][0]
    agent.load_state_dict(population.member_state_dict(1))
    obs = np.stack([replays[k].sample(1, 1).obs(0)[0] for k in range(2)])
    assert np.allclose(population.act(obs, sample=False)[1], agent.act(obs[1], sample=False),
                       atol=1e-6)
    with pytest.raises(TypeError, match="member_state_dict"):
        population.state_dict()


def test_population_rejects_what_it_cannot_batch():
    config = tiny_config("auxi_sac", "ofe")
    a = make_agent(config, (OBS_DIM,), ACTIONS, torch.device("cpu"))
    b = make_agent(config.replace(hidden_dim=32), (OBS_DIM,), ACTIONS, torch.device("cpu"))
    with pytest.raises(ValueError, match="^--seeds: the members of a population differ only"):
        Population([a, b], [torch.Generator(), torch.Generator()])
    population = Population([a, copy.deepcopy(a)], [torch.Generator(), torch.Generator()])
    with pytest.raises(ValueError, match="Population.keep"):
        population.keep([0, 0])
    with pytest.raises(ValueError, match="2 members"):
        population.act(np.zeros((3, OBS_DIM), np.float32), sample=False)


@pytest.mark.parametrize("grouped", [False, True], ids=["per-member", "grouped"])
def test_stacked_conv_trunk_is_each_members_lone_trunk(grouped, monkeypatch, float64):
    """Both paths of the stacked conv trunk (per-member convolutions over channel slices, the
    CPU's; one grouped convolution, an accelerator's, forced here on the CPU) give each
    member its lone trunk's features and weight gradients."""
    monkeypatch.setattr(networks, "GROUPED_ON_CPU", grouped)
    torch.manual_seed(0)
    lone = [networks.ConvTrunk((3 * STACK, CROP, CROP), 3, 4) for _ in range(3)]
    stacked = copy.deepcopy(lone[0])
    for name, p in stacked.named_parameters():
        p.data = torch.stack([dict(t.named_parameters())[name].detach() for t in lone])
    images = torch.randint(0, 256, (3, 5, 3 * STACK, CROP, CROP), dtype=torch.uint8)
    side_by_side = images.transpose(0, 1).reshape(5, 3 * 3 * STACK, CROP, CROP).contiguous(
        memory_format=torch.channels_last)
    out = stacked(side_by_side)
    assert out.shape == (3, 5, lone[0].out_dim)
    out.square().sum().backward()
    for k, trunk in enumerate(lone):
        mine = trunk(images[k].contiguous(memory_format=torch.channels_last))
        assert torch.allclose(out[k], mine, rtol=1e-10, atol=1e-10)
        mine.square().sum().backward()
        for p, q in zip(stacked.parameters(), trunk.parameters()):
            assert torch.allclose(p.grad[k], q.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("device", [d for d in devices() if d != "cpu"])  # cpu vs cpu: vacuous
@pytest.mark.parametrize("encoder", ["ofe", "pixel"])
def test_population_on_a_device_computes_what_it_computes_on_the_cpu(device, encoder, float64):
    """The accelerator paths (grouped convolutions there, crops cut by one gather over all
    members' windows) give the CPU's numbers; all random draws come from the members' host
    streams, so both see the same crops and noise."""
    config = tiny_config("auxi_sac", encoder)
    on_cpu, replays_cpu, _ = members_and_lone(config, seeds=(1, 2))
    on_device, replays_dev, _ = members_and_lone(config, seeds=(1, 2), device=device)
    for step in range(10):
        for mine, theirs in zip(on_device.update(replays_dev, step), on_cpu.update(replays_cpu, step)):
            for key, value in theirs.items():
                if not key.endswith("accuracy"):
                    assert math.isclose(mine[key], value, rel_tol=1e-6, abs_tol=1e-9), (step, key)
    for k in range(2):
        mine, theirs = on_device.member_state_dict(k), on_cpu.member_state_dict(k)
        for module in theirs:
            for key, value in theirs[module].items():
                assert torch.allclose(mine[module][key].cpu().double(), value.double(), atol=1e-8)


# ------------------------------------------------------------------ the cohort loop (real envs)
def cartpole(**changes) -> TrainConfig:
    """Real dm_control cartpole: 100 agent steps (50 random, then 50 updates), checkpoints
    at the start and the end (an evaluation episode is 1000 control steps, most of the cost)."""
    flags = dict(domain_name="cartpole_swingup", agent="pixel_sac", encoder_type="mlp",
                 encoder_hidden_size=16, num_layers=1, batch_size=16, hidden_dim=32,
                 init_steps=50, num_train_steps=8 * 100, eval_freq=8 * 100,
                 num_eval_episodes=1, device="cpu")
    return TrainConfig(**{**flags, **changes})


def test_cohort_members_train_as_lone_runs_of_their_seeds(tmp_path):
    seeds, calls = [3, 4], []
    results = train_cohort(cartpole(), seeds, [tmp_path / "a", tmp_path / "b"],
                           on_checkpoint=lambda member, curve: calls.append((member, curve)))
    alone = train(cartpole(), seed=4)  # the second member's lone run
    assert results[1].failed is None and alone.failed is None
    assert [s for s, _ in results[1].curve] == [s for s, _ in alone.curve] == [0, 800]
    # At the start the policy is the initial one: the same return but for the batched act's
    # rounding; after 50 updates the rounding, amplified by training, is still small.
    assert math.isclose(results[1].curve[0][1], alone.curve[0][1], rel_tol=1e-5)
    assert math.isclose(results[1].curve[1][1], alone.curve[1][1], rel_tol=1e-2, abs_tol=0.5)
    assert results[0].curve[0][1] != results[1].curve[0][1]  # two seeds, two runs
    for k, (seed, result) in enumerate(zip(seeds, results)):
        assert result.seed == seed
        assert [c for m, c in calls if m == k] == [result.curve[:1], result.curve]
        run = tmp_path / ("a", "b")[k]
        assert (run / "config.json").read_text().count(f'"seed": {seed}') == 1
        assert len((run / "eval.csv").read_text().splitlines()) == 1 + 2
        assert (run / "train.csv").exists() and (run / "result.json").exists()


def test_cohort_drops_a_diverging_member_and_trains_the_others(monkeypatch):
    def poisoned(*args, **kwargs):
        population = make_population(*args, **kwargs)
        with torch.no_grad():
            population.critic.q.w3[0].fill_(float("nan"))
        return population

    monkeypatch.setattr(cohort_module, "make_population", poisoned)
    calls = []
    results = train_cohort(cartpole(), [3, 4],
                           on_checkpoint=lambda member, curve: calls.append(member))
    # As a lone run ends: at its first update (env step 400), with no checkpoint after it.
    # (That the other's numbers are those it gets beside a healthy member is
    # test_a_nan_member_is_dropped_and_the_others_do_not_change, bitwise.)
    assert results[0].failed == "diverged: non-finite critic_loss at env step 400"
    assert [s for s, _ in results[0].curve] == [0]
    assert calls == [0, 1, 1]  # member 1, now the population's first, still reports as 1
    assert results[1].failed is None and [s for s, _ in results[1].curve] == [0, 800]
    assert all(math.isfinite(r) for _, r in results[1].curve)


def test_cohort_rejects_bad_seeds_and_run_dirs_in_one_line(tmp_path):
    for seeds in ([], [1, 1], [-1, 2]):
        with pytest.raises(ValueError, match="^--seeds: a cohort needs distinct seeds >= 0"):
            train_cohort(cartpole(), seeds)
    with pytest.raises(ValueError, match="^--run: 1 run directories for 2 seeds"):
        train_cohort(cartpole(), [1, 2], [tmp_path / "a"])
    with pytest.raises(ValueError, match="^--agent"):
        train_cohort(cartpole(agent="sac"), [1, 2])
    with pytest.raises(ValueError, match="^--image_size: 5 is too small for 4 conv layers"):
        train_cohort(cartpole(encoder_type="pixel", num_layers=4, image_size=5,
                              pre_transform_image_size=5), [1, 2], [tmp_path / "a", tmp_path / "b"])
    assert not any(tmp_path.iterdir())  # nothing written before the config fails
