"""The SAC agent: metrics, acting, gradient routing of the actor and CURL losses, one optimizer
per parameter set and loss (SPEC defect 3), EMA, encoder passes per update, determinism."""
from __future__ import annotations

import collections
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from accelerators import devices
from rl.agent import make_agent
from rl.augment import gather_crops, window_states
from rl.config import TrainConfig, resolve
from rl import networks
from rl.networks import OfeTrunk, TwinQ
from rl.replay import ReplayBuffer

torch.set_num_threads(1)

ACTIONS, OBS_DIM, RENDER, CROP, STACK, B = 3, 5, 24, 20, 3, 8


def replay_for(pixels: bool, size: int = RENDER, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    if pixels:
        replay = ReplayBuffer(200, (3, size, size), np.uint8, ACTIONS, frame_stack=STACK, seed=seed)

        def obs():
            return rng.integers(0, 256, (3 * STACK, size, size), dtype=np.uint8)
    else:
        replay = ReplayBuffer(200, (OBS_DIM,), np.float32, ACTIONS, seed=seed)

        def obs():
            return rng.standard_normal(OBS_DIM).astype(np.float32)
    for i in range(60):
        if i % 20 == 0:
            replay.start_episode(obs())
        replay.add(rng.uniform(-1, 1, ACTIONS), float(rng.standard_normal()), obs(), False)
    return replay


def tiny(agent: str = "auxi_sac", pixels: bool = True, **changes):
    """(agent, replay) at tiny sizes; pixel_sac renders at the crop size."""
    render = CROP if agent == "pixel_sac" else RENDER
    config = resolve(TrainConfig(
        agent=agent, encoder_type="pixel" if pixels else "mlp", batch_size=B, hidden_dim=16,
        encoder_feature_dim=8, num_filters=4, encoder_hidden_size=8,
        num_layers=4 if pixels else 2, pre_transform_image_size=render, image_size=CROP,
        frame_stack=STACK, **changes))
    shape = (3 * STACK, render, render) if pixels else (OBS_DIM,)
    return make_agent(config, shape, ACTIONS, torch.device("cpu")), replay_for(pixels, render)


@pytest.mark.parametrize("pixels", [False, True], ids=["states", "pixels"])
@pytest.mark.parametrize("name", ["auxi_sac", "curl_sac", "pixel_sac"])
def test_update_returns_the_named_metrics(name, pixels):
    torch.manual_seed(0)
    agent, replay = tiny(name, pixels)
    extra = {"auxi_sac": {"aux_loss"}, "curl_sac": {"curl_loss", "curl_accuracy"}}.get(name, set())
    actor = {"actor_loss", "alpha_loss", "alpha", "actor_entropy"}
    base = {"critic_loss", "q_mean", "batch_reward"} | extra
    assert set(agent.update(replay, 1)) == base  # actor keys only on actor steps
    metrics = agent.update(replay, 2)
    assert set(metrics) == base | actor
    assert all(np.isfinite(v) for v in metrics.values())
    losses = {k for k in base | actor if k.endswith("_loss")}  # without diagnostics
    assert set(agent.update(replay, 4, diagnostics=False)) == losses


def test_act_center_crops_pixels_but_not_for_pixel_sac():
    torch.manual_seed(0)
    agent, _ = tiny("auxi_sac")
    seen = []
    agent.actor.trunk.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    obs = np.random.default_rng(0).integers(0, 256, (3 * STACK, RENDER, RENDER), dtype=np.uint8)
    for sample in (True, False):
        action = agent.act(obs, sample=sample)
        assert action.shape == (ACTIONS,) and np.all(np.abs(action) <= 1)
    assert seen[-1] == (1, 3 * STACK, CROP, CROP)
    plain, _ = tiny("pixel_sac")
    plain.actor.trunk.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    plain.act(obs[:, :CROP, :CROP].copy(), sample=False)
    assert seen[-1] == (1, 3 * STACK, CROP, CROP)
    with pytest.raises(ValueError, match="--image_size"):
        make_agent(plain.config, (3 * STACK, RENDER, RENDER), ACTIONS, torch.device("cpu"))


def test_mean_action_is_deterministic_and_sampled_action_is_not():
    torch.manual_seed(0)
    agent, _ = tiny("pixel_sac", pixels=False)
    obs = np.ones(OBS_DIM, np.float32)
    assert np.array_equal(agent.act(obs, False), agent.act(obs, False))
    assert not np.array_equal(agent.act(obs, True), agent.act(obs, True))


def _grad_hooks(module: nn.Module, calls: list) -> None:
    for name, p in module.named_parameters():
        p.register_hook(lambda g, name=name: calls.append(name))


@pytest.mark.parametrize("pixels", [False, True], ids=["states", "pixels"])
def test_actor_loss_does_not_reach_the_critic_encoder_by_default(pixels):
    torch.manual_seed(0)
    agent, replay = tiny("auxi_sac", pixels)
    calls = []
    _grad_hooks(agent.critic, calls)
    head_before = [p.clone() for p in agent.actor.head.parameters()]
    agent._update_actor(agent._sample(replay), None, {})
    assert calls == []
    assert any(not torch.equal(a, p) for a, p in zip(head_before, agent.actor.head.parameters()))


def test_update_encoder_with_actorloss_trains_the_tied_trunk():
    torch.manual_seed(0)
    agent, replay = tiny("auxi_sac", update_encoder_with_actorloss=True)
    calls = []
    _grad_hooks(agent.critic.encoder.trunk, calls)
    _grad_hooks(agent.critic.encoder.head, calls)
    agent._update_actor(agent._sample(replay), None, {})
    assert calls and all(name.startswith("convs") for name in calls)  # trunk only, not the head


@pytest.mark.parametrize("name", ["auxi_sac", "curl_sac"])
def test_each_parameter_is_stepped_once_per_loss(name):  # SPEC defect 3
    torch.manual_seed(0)
    agent, replay = tiny(name)
    opt = agent.optimizers
    assert set(opt) == {"critic", "actor", "representation"}
    groups = {k: [{id(p) for p in g["params"]} for g in o.param_groups] for k, o in opt.items()}
    for k, sets in groups.items():  # no parameter in two groups of one optimizer
        assert sum(map(len, sets)) == len(set().union(*sets)), k
    held = {k: set().union(*sets) for k, sets in groups.items()}
    assert not held["actor"] & held["critic"]  # the tied conv trunk is the critic's
    encoder = list(agent.critic.encoder.parameters())
    rep = list((agent.aux or agent.curl).parameters())
    assert groups["representation"] == [{id(p) for p in encoder}, {id(p) for p in rep}]
    steps = collections.Counter()
    for optimizer in opt.values():
        original = optimizer.step

        def counted(*args, _original=original, _optimizer=optimizer, **kwargs):
            steps.update(id(p) for g in _optimizer.param_groups for p in g["params"]
                         if p.grad is not None)
            return _original(*args, **kwargs)
        optimizer.step = counted
    agent.update(replay, 2)  # critic, actor + temperature, representation
    assert [steps[id(p)] for p in encoder] == [2] * len(encoder)  # critic loss, aux/CURL loss
    assert [steps[id(p)] for p in rep] == [1] * len(rep)
    assert all(steps[id(p)] == 1 for p in agent.critic.q.parameters())
    actor = list(agent.actor.head.parameters()) + list(agent.actor.mlp.parameters())
    assert all(steps[id(p)] == 1 for p in actor + [agent.log_alpha])
    assert all(steps[id(p)] == 0 for p in agent.critic_target.parameters())


def test_curl_routing_and_independent_crops():
    torch.manual_seed(0)
    agent, replay = tiny("curl_sac")
    seen = {}
    agent.critic.encoder.trunk.register_forward_pre_hook(
        lambda m, args: seen.setdefault("anchor", args[0].clone()))
    agent.critic_target.encoder.register_forward_pre_hook(
        lambda m, args: seen.setdefault("positive", args[0].clone()))
    terms = agent.representation_terms(replay)
    assert not torch.equal(seen["anchor"], seen["positive"])  # two crops of the same frames
    terms["loss_curl"].backward()
    assert all(p.grad is not None for p in agent.critic.encoder.parameters())
    assert agent.curl.w.grad is not None and agent.curl.w.grad.abs().sum() > 0
    assert all(p.grad is None for p in agent.critic_target.parameters())
    assert all(p.grad is None for p in agent.critic.q.parameters())


def test_curl_on_states_contrasts_the_same_vector():
    torch.manual_seed(0)
    agent, replay = tiny("curl_sac", pixels=False)
    seen = {}
    agent.critic.encoder.trunk.register_forward_pre_hook(
        lambda m, args: seen.setdefault("anchor", args[0].clone()))
    agent.critic_target.encoder.register_forward_pre_hook(
        lambda m, args: seen.setdefault("positive", args[0].clone()))
    agent.representation_terms(replay)
    assert torch.equal(seen["anchor"], seen["positive"])


def test_target_update_is_an_ema_at_the_two_rates():
    torch.manual_seed(0)
    agent, _ = tiny("auxi_sac")
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.add_(1.0)
    q_old = agent.critic_target.q.w2.clone()
    enc_old = agent.critic_target.encoder.head[0].weight.clone()
    agent._update_targets()
    c = agent.config
    expected_q = q_old + c.critic_tau * (agent.critic.q.w2 - q_old)
    expected_enc = enc_old + c.encoder_tau * (agent.critic.encoder.head[0].weight - enc_old)
    assert torch.allclose(agent.critic_target.q.w2, expected_q)
    assert torch.allclose(agent.critic_target.encoder.head[0].weight, expected_enc)


def _count_passes(agent) -> dict[str, list[int]]:
    passes = collections.defaultdict(list)
    for label, module in (("online", agent.critic.encoder.trunk),
                          ("target", agent.critic_target.encoder.trunk)):
        module.register_forward_hook(
            lambda m, args, out, label=label: passes[label].append(args[0].shape[0]))
    return passes


@pytest.mark.parametrize("shared", [False, True])
def test_encoder_passes_per_update(shared):
    """The update docstring's pass list for pixel A2-winner (s_t -> s_t+1..t+4)."""
    torch.manual_seed(0)
    agent, replay = tiny("auxi_sac", shared_window=shared)
    samples = []
    original = replay.sample
    replay.sample = lambda b, k: samples.append(k) or original(b, k)
    passes = _count_passes(agent)
    agent.update(replay, 2)  # an actor step
    if shared:  # one window; target s_t+1..t+4 in one call; actor reuses the source pass
        assert samples == [4]
        assert passes == {"online": [B, B, B], "target": [4 * B]}
    else:  # RL batch and auxiliary window; passes 1, 3, 5, 4 (actor), 2, 6
        assert samples == [1, 4]
        assert passes == {"online": [B, B, B, B], "target": [B, 4 * B]}


def test_curl_actor_step_reuses_the_anchor_pass():
    torch.manual_seed(0)
    agent, replay = tiny("curl_sac")
    passes = _count_passes(agent)
    agent.update(replay, 2)
    assert passes == {"online": [B, B, B], "target": [B, B]}  # next, obs, anchor; next, positive


@pytest.mark.parametrize("case", [("auxi_sac", True, False), ("auxi_sac", True, True),
                                  ("auxi_sac", False, False), ("curl_sac", True, False)],
                         ids=["pixels", "pixels-shared", "states", "curl"])
def test_same_seed_gives_identical_updates(case):
    name, pixels, shared = case

    def run():
        torch.manual_seed(7)
        agent, replay = tiny(name, pixels, shared_window=shared)
        return [agent.update(replay, step) for step in range(3)]

    first, second = run(), run()
    assert first == second
    torch.manual_seed(8)
    agent, replay = tiny(name, pixels, shared_window=shared)
    assert [agent.update(replay, step) for step in range(3)] != first


def test_state_dict_round_trip():
    torch.manual_seed(0)
    agent, replay = tiny("auxi_sac")
    agent.update(replay, 0)
    state = agent.state_dict()
    assert set(state) == {"actor", "critic", "critic_target", "aux", "log_alpha"}
    torch.manual_seed(1)
    other, _ = tiny("auxi_sac")
    other.load_state_dict(state)
    obs = np.zeros((3 * STACK, RENDER, RENDER), np.uint8)
    assert np.array_equal(agent.act(obs, False), other.act(obs, False))


def test_twin_q_is_two_independent_mlps():
    torch.manual_seed(0)
    q, x = TwinQ(5, 7), torch.randn(4, 5)
    out = q(x)
    for i in range(2):
        h = torch.relu(x @ q.w1[i] + q.b1[i])
        h = torch.relu(h @ q.w2[i] + q.b2[i])
        assert torch.allclose(out[i], h @ q.w3[i, 0] + q.b3[i], atol=1e-6)
        w1, w2 = q.w1[i].detach(), q.w2[i].detach()
        assert torch.allclose(w1 @ w1.T, torch.eye(5), atol=1e-5)  # orthogonal init per head
        assert torch.allclose(w2.T @ w2, torch.eye(7), atol=1e-5)


def test_encoders_end_in_layer_norm_and_ofe_is_dense():
    torch.manual_seed(0)
    agent, _ = tiny("auxi_sac")
    feature = agent.critic.encoder(torch.randint(0, 256, (4, 3 * STACK, CROP, CROP),
                                                 dtype=torch.uint8))
    assert feature.shape == (4, 8)
    assert torch.allclose(feature.mean(1), torch.zeros(4), atol=1e-5)  # LayerNorm, no tanh
    trunk = OfeTrunk(OBS_DIM, 2, 8)
    x = torch.randn(3, OBS_DIM)
    assert trunk.out_dim == OBS_DIM + 16 and torch.equal(trunk(x)[:, :OBS_DIM], x)
    ofe_agent = make_agent(resolve(TrainConfig(encoder_type="ofe", num_layers=2,
                                               encoder_hidden_size=8, hidden_dim=16)),
                           (OBS_DIM,), ACTIONS, torch.device("cpu"))
    assert ofe_agent.critic.encoder.feature_dim == OBS_DIM + 16  # released: feature = trunk width


def test_encoder_call_over_many_images_runs_a_chunk_at_a_time(monkeypatch):
    """On CPU an encoder call over more than CPU_CHUNK images runs trunk + head per chunk
    (no concatenated feature maps): the same features and weight gradients as one call."""
    torch.manual_seed(0)
    agent, _ = tiny("auxi_sac")
    encoder = agent.critic.encoder
    obs = torch.randint(0, 256, (10, 3 * STACK, CROP, CROP), dtype=torch.uint8)
    params = list(encoder.parameters())
    whole = encoder(obs)
    whole_grads = torch.autograd.grad(whole.square().sum(), params)
    calls = []
    encoder.trunk.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    monkeypatch.setattr(networks, "CPU_CHUNK", 4)
    for detach in (False, True):
        chunked = encoder(obs, detach_trunk=detach)
        assert torch.allclose(chunked, whole, atol=1e-5)
    assert calls == [4, 4, 2, 4, 4, 2]
    grads = torch.autograd.grad(encoder(obs).square().sum(), params)
    for got, want in zip(grads, whole_grads):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_squashed_gaussian_log_prob_is_the_released_one():
    """log pi = Normal(mu, std) log-density of the pre-tanh sample u = mu + std * noise,
    minus sum log(relu(1 - tanh(u)^2) + 1e-6) (the released correction)."""
    torch.manual_seed(0)
    mu, log_std, noise = torch.randn(256, 6), torch.rand(256, 6) * 3 - 2, torch.randn(256, 6)
    mean, pi, log_pi = networks.squashed_gaussian(mu, log_std, noise)
    u = mu + noise * log_std.exp()
    want = (torch.distributions.Normal(mu, log_std.exp()).log_prob(u)
            - torch.log(torch.relu(1 - torch.tanh(u) ** 2) + 1e-6)).sum(-1, keepdim=True)
    assert torch.allclose(pi, torch.tanh(u), atol=1e-6) and torch.equal(mean, torch.tanh(mu))
    assert torch.allclose(log_pi, want, rtol=1e-5, atol=1e-4)
    # Saturated: the correction stops at log(1e-6) per dimension.
    _, _, saturated = networks.squashed_gaussian(torch.full((1, 6), 50.0), torch.zeros(1, 6),
                                                 torch.zeros(1, 6))
    assert torch.allclose(saturated, torch.tensor([[6 * (-0.5 * math.log(2 * math.pi))
                                                    - 6 * math.log(1e-6)]]), rtol=1e-5)


def test_actor_log_std_stays_in_bounds():
    torch.manual_seed(0)
    agent, _ = tiny("pixel_sac", pixels=False, actor_log_std_min=-3.0, actor_log_std_max=1.0)
    h = 100 * torch.randn(64, agent.actor.trunk.out_dim)
    _, pi, log_pi, log_std = agent.actor(h)
    assert log_std.min() >= -3.0 and log_std.max() <= 1.0
    assert pi.abs().max() <= 1 and torch.isfinite(log_pi).all()


def test_random_crop_is_one_corner_per_state_for_all_its_frames():
    torch.manual_seed(0)
    frames = np.random.default_rng(0).integers(0, 256, (2, 2 + STACK, 3, RENDER, RENDER),
                                               dtype=np.uint8)
    out = window_states(frames, (0, 2), STACK, CROP, torch.device("cpu")).numpy()
    assert out.shape == (4, 3 * STACK, CROP, CROP)
    for i, j in enumerate((0, 2)):
        for b in range(2):
            state = frames[b, j:j + STACK].reshape(3 * STACK, RENDER, RENDER)
            corners = [(t, l) for t in range(RENDER - CROP + 1) for l in range(RENDER - CROP + 1)
                       if np.array_equal(state[:, t:t + CROP, l:l + CROP], out[i * 2 + b])]
            assert corners  # every channel (all S frames) cut at the same corner


@pytest.mark.parametrize("device", devices())
def test_device_crop_gather_equals_the_host_crop_loop(device):
    """The accelerator path (rl.augment.gather_crops, one indexing op) cuts the same crops as
    the CPU copy loop for the same corners, already in channels-last memory order; on CUDA
    through window_states itself (which takes that path off the CPU)."""
    frames = np.random.default_rng(1).integers(0, 256, (5, 3 + STACK, 3, RENDER, RENDER),
                                               dtype=np.uint8)
    offsets = (0, 3, 1)
    torch.manual_seed(7)
    host = window_states(frames, offsets, STACK, CROP, torch.device("cpu"))
    torch.manual_seed(7)  # the same corners, drawn as window_states draws them
    tops = torch.randint(0, RENDER - CROP + 1, (len(offsets), 5))
    lefts = torch.randint(0, RENDER - CROP + 1, (len(offsets), 5))
    dev = torch.device(device)
    gathered = gather_crops(torch.from_numpy(frames).to(dev), offsets, STACK, CROP,
                            tops.to(dev), lefts.to(dev))
    assert torch.equal(gathered.cpu(), host)
    assert gathered.is_contiguous(memory_format=torch.channels_last)
    if dev.type != "cpu":
        torch.manual_seed(7)
        assert torch.equal(window_states(frames, offsets, STACK, CROP, dev).cpu(), host)


def test_action_embedding_for_q_needs_the_auxiliary_action_embedding():
    with pytest.raises(ValueError, match="--use_action_embedding_for_Q: needs"):
        tiny("auxi_sac", use_action_embedding_for_Q=True)
    with pytest.raises(ValueError, match="--use_action_embedding_for_Q: needs"):
        tiny("pixel_sac", use_action_embedding_for_Q=True, action_embedding=True)


@pytest.mark.parametrize("pixels", [False, True], ids=["states", "pixels"])
def test_action_embedding_for_q_routing(pixels):
    """Q reads the aux loss's action embedding; critic and aux losses train it, the actor
    loss reaches the policy through it but not its weights; the target holds an EMA copy."""
    torch.manual_seed(0)
    agent, replay = tiny("auxi_sac", pixels, use_action_embedding_for_Q=True,
                         action_embedding=True)
    embed = agent.critic.action_encoder
    assert embed is agent.aux.action_embed  # one module, shared
    assert agent.critic_target.action_encoder is not embed
    assert agent.critic.q.w1.shape[1] == agent.critic.encoder.feature_dim + embed.out_dim
    critic_groups = [{id(p) for p in g["params"]} for g in agent.optimizers["critic"].param_groups]
    assert critic_groups[1] == {id(p) for p in embed.parameters()}
    assert agent.optimizers["critic"].param_groups[1]["lr"] == agent.config.encoder_lr
    assert not critic_groups[0] & critic_groups[1]

    calls = []
    _grad_hooks(embed, calls)
    actor_before = [p.clone() for p in agent.actor.mlp.parameters()]
    agent._update_actor(agent._sample(replay), None, {})
    assert calls == []  # the actor loss never computes the embedding's weight gradients
    assert any(not torch.equal(a, p) for a, p in zip(actor_before, agent.actor.mlp.parameters()))
    batch = agent._sample(replay)
    feature = agent.critic.encoder(batch.rl.get((0,))).detach()
    action = batch.action.clone().requires_grad_(True)
    agent.critic.q_values(feature, action).sum().backward()
    assert action.grad.abs().sum() > 0  # Q's gradient reaches the action through the embedding

    before = [p.clone() for p in embed.parameters()]
    target_before = [p.clone() for p in agent.critic_target.action_encoder.parameters()]
    agent._update_critic(agent._sample(replay), {})
    assert calls  # the critic loss trains the embedding
    assert all(not torch.equal(a, p) for a, p in zip(before, embed.parameters()))
    calls.clear()
    agent.representation_terms(replay)["loss_aux"].backward()
    assert calls  # so does the auxiliary loss
    agent._update_targets()
    tau = agent.config.encoder_tau
    for old, target, online in zip(target_before, agent.critic_target.action_encoder.parameters(),
                                   embed.parameters()):
        assert torch.allclose(target, old + tau * (online - old))
    assert np.isfinite(list(agent.update(replay, 2).values())).all()


def test_detach_encoder_keeps_the_critic_loss_out_of_the_action_embedding():
    torch.manual_seed(0)
    agent, replay = tiny("auxi_sac", False, use_action_embedding_for_Q=True,
                         action_embedding=True, detach_encoder=True)
    calls = []
    _grad_hooks(agent.critic.action_encoder, calls)
    agent._update_critic(agent._sample(replay), {})
    assert calls == []


def test_identity_encoder_feeds_the_observation_straight_into_actor_and_critic():
    """--encoder_type identity (the released state baseline): no encoder weights, Q and the
    policy read the raw state, and an update trains both."""
    config = resolve(TrainConfig(agent="pixel_sac", encoder_type="identity", batch_size=B,
                                 hidden_dim=16))
    agent, replay = make_agent(config, (OBS_DIM,), ACTIONS, torch.device("cpu")), replay_for(False)
    assert list(agent.critic.encoder.parameters()) == [] and agent.critic.encoder.feature_dim == OBS_DIM
    assert list(agent.actor.trunk.parameters()) == [] and list(agent.actor.head.parameters()) == []
    obs = torch.randn(4, OBS_DIM)
    action = torch.rand(4, ACTIONS) * 2 - 1
    assert torch.equal(agent.critic(obs, action), agent.critic.q_values(obs, action))
    before = {n: p.detach().clone() for n, p in agent.critic.q.named_parameters()}
    actor_before = [p.detach().clone() for p in agent.actor.mlp.parameters()]
    seen = set()
    for step in range(4):
        seen |= set(agent.update(replay, step))
    assert {"critic_loss", "actor_loss"} <= seen and "aux_loss" not in seen
    assert any(not torch.equal(p, before[n]) for n, p in agent.critic.q.named_parameters())
    assert any(not torch.equal(p, q) for p, q in zip(agent.actor.mlp.parameters(), actor_before))


@pytest.mark.parametrize("agent", ["auxi_sac", "curl_sac"])
def test_identity_encoder_has_nothing_for_a_representation_loss_to_shape(agent):
    with pytest.raises(ValueError, match=r"^--encoder_type: identity .*\(use it with --agent pixel_sac\)$"):
        resolve(TrainConfig(agent=agent, encoder_type="identity"))
