"""The genome-driven auxiliary loss: gradient routing, every operator on every named loss,
the fixed defects 1 and 4 of the released code, crops shared by both sides."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rl.agent import make_agent
from rl.aux_loss import AuxLoss, similarity_loss
from rl.config import TrainConfig, resolve
from rl.replay import ReplayBuffer
from spaces import METRICS, NAMED_LOSSES, make, named

torch.set_num_threads(1)

ACTIONS, OBS_DIM, RENDER, CROP, STACK = 3, 5, 24, 20, 3
VARIANTS = [(m, n) for m in METRICS for n in (False, True)]


def replay_for(pixels: bool, transitions: int = 60, episode: int = 20) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    if pixels:
        replay = ReplayBuffer(200, (3, RENDER, RENDER), np.uint8, ACTIONS, frame_stack=STACK)

        def obs():
            return rng.integers(0, 256, (3 * STACK, RENDER, RENDER), dtype=np.uint8)
    else:
        replay = ReplayBuffer(200, (OBS_DIM,), np.float32, ACTIONS)

        def obs():
            return rng.standard_normal(OBS_DIM).astype(np.float32)
    for i in range(transitions):
        if i % episode == 0:
            replay.start_episode(obs())
        replay.add(rng.uniform(-1, 1, ACTIONS), float(rng.standard_normal()), obs(), False)
    return replay


def tiny_agent(pixels: bool, **changes):
    config = resolve(TrainConfig(
        agent=changes.pop("agent", "auxi_sac"), encoder_type="pixel" if pixels else "ofe",
        batch_size=8, hidden_dim=16, encoder_feature_dim=8, num_filters=4,
        encoder_hidden_size=8, num_layers=4 if pixels else 1,
        pre_transform_image_size=RENDER, image_size=CROP, frame_stack=STACK, **changes))
    shape = (3 * STACK, RENDER, RENDER) if pixels else (OBS_DIM,)
    return make_agent(config, shape, ACTIONS, torch.device("cpu"))


def grads(module: torch.nn.Module) -> list:
    return [p.grad for p in module.parameters()]


def assert_routed(agent, loss: torch.Tensor, nonzero: bool = True) -> None:
    """The loss alone reaches the online encoder and the loss module, nothing else."""
    loss.backward()
    rep = agent.aux if agent.aux is not None else agent.curl
    for name, module in (("online encoder", agent.critic.encoder), ("loss module", rep)):
        got = grads(module)
        assert all(g is not None for g in got), f"{name}: a parameter got no gradient"
        assert all(torch.isfinite(g).all() for g in got), f"{name}: non-finite gradient"
        assert not nonzero or any(g.abs().sum() > 0 for g in got), f"{name}: all-zero gradient"
    for name, module in (("target encoder", agent.critic_target), ("Q heads", agent.critic.q),
                         ("actor head", agent.actor.head), ("actor MLP", agent.actor.mlp)):
        assert all(g is None for g in grads(module)), f"{name} got a gradient"


@pytest.mark.parametrize("pixels", [False, True], ids=["states", "pixels"])
@pytest.mark.parametrize("loss_name", list(NAMED_LOSSES))
def test_every_operator_on_every_named_loss(loss_name, pixels):
    replay = replay_for(pixels)
    for metric, negatives in VARIANTS:
        torch.manual_seed(0)
        genome = NAMED_LOSSES[loss_name].replace(metric=metric, negatives=negatives)
        agent = tiny_agent(pixels, genome=genome)
        terms = agent.representation_terms(replay)
        assert torch.isfinite(terms["loss_aux"]), (metric, negatives)
        # A normalised 1-d target (reward prediction under nmse/cos_sim) is just a sign:
        # its gradient is zero, a degenerate point of the search space, not a routing fault.
        degenerate = agent.aux.target_dim == 1 and metric in ("nmse", "cos_sim")
        assert_routed(agent, terms["loss_aux"], nonzero=not degenerate)


@pytest.mark.parametrize("pixels", [False, True], ids=["states", "pixels"])
def test_embeddings_get_gradient_and_targets_stay_raw(pixels):
    torch.manual_seed(0)
    agent = tiny_agent(pixels, genome=named("a2-winner"), action_embedding=True,
                       reward_embedding=True)
    aux = agent.aux
    assert aux.action_embed is not None and aux.reward_embed is not None
    # Target: 4 states, raw actions/rewards would add action_dim / 1 per element (none here).
    assert aux.target_dim == 4 * agent.critic.encoder.feature_dim
    assert_routed(agent, agent.representation_terms(replay_for(pixels))["loss_aux"])
    for embed in (aux.action_embed, aux.reward_embed):
        assert all(g is not None and g.abs().sum() > 0 for g in grads(embed))


@pytest.mark.parametrize("shared", [False, True])
def test_no_ema_targets_use_the_online_encoder_without_gradient(shared):
    torch.manual_seed(0)
    agent = tiny_agent(True, genome=named("curl-like"), auxi_ema=False, shared_window=shared)
    terms = agent.representation_terms(replay_for(True))
    assert_routed(agent, terms["loss_aux"])


def test_a_state_on_both_sides_is_the_same_crop():
    """curl-like (s_t -> s_t): the online and the EMA encoder see one crop of s_t."""
    torch.manual_seed(0)
    agent = tiny_agent(True, genome=named("curl-like"))
    seen = {}
    agent.critic.encoder.trunk.register_forward_pre_hook(
        lambda m, args: seen.setdefault("online", args[0].clone()))
    agent.critic_target.encoder.register_forward_pre_hook(
        lambda m, args: seen.setdefault("target", args[0].clone()))
    agent.representation_terms(replay_for(True))
    assert seen["online"].shape == (8, 3 * STACK, CROP, CROP)
    assert torch.equal(seen["online"], seen["target"])


def test_mse_with_negatives_runs_and_subtracts_a_rolled_target():  # SPEC defect 1
    torch.manual_seed(0)
    pred, target = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4)
    loss, _ = similarity_loss(pred, target, "mse", True)
    expected = F.mse_loss(pred, target) - F.mse_loss(pred, target.roll(1, 0))
    assert torch.isfinite(loss) and torch.allclose(loss, expected)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("metric", ["inner_product", "bilinear_inner_product", "cos_sim"])
def test_positive_only_forms_prefer_matched_pairs(metric):  # SPEC defect 4
    torch.manual_seed(0)
    target = torch.randn(32, 6)
    w = torch.eye(6)  # a learned W can make any pair "similar"; at identity, matching wins
    matched, _ = similarity_loss(target.clone(), target, metric, False, w)
    shuffled, _ = similarity_loss(target.roll(1, 0), target, metric, False, w)
    assert matched < shuffled
    assert matched >= 0  # bounded below: softplus(-s) >= 0, 1 - cos >= 0
    if metric == "cos_sim":
        assert matched == pytest.approx(0.0, abs=1e-6) and shuffled <= 2.0


@pytest.mark.parametrize("metric", ["inner_product", "bilinear_inner_product", "cos_sim"])
def test_infonce_with_negatives_prefers_matched_pairs(metric):
    torch.manual_seed(0)
    target, w = torch.randn(16, 6), torch.eye(6)
    matched, metrics = similarity_loss(3 * target, target, metric, True, w)
    shuffled, _ = similarity_loss(3 * target.roll(1, 0), target, metric, True, w)
    assert matched < shuffled
    if metric == "cos_sim":  # unnormalised products can rank a long vector above the match
        assert metrics["aux_accuracy"] == 1.0


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_genome_with_an_empty_side_cannot_be_built(side):
    genome = make(1, [] if side == "source" else ["s0"], [] if side == "target" else ["s1"])
    with pytest.raises(ValueError, match=f"empty {side}"):
        AuxLoss(genome, feature_dim=8, action_dim=ACTIONS)


def test_predictor_shapes_follow_the_genome():
    aux = AuxLoss(named("a2-winner"), feature_dim=8, action_dim=ACTIONS)
    # source: s0 (8) + a0..a3 (4 x 3) + r0, r1, r3 (3) = 23; target: s1..s4 = 32
    first, norm, _, last = aux.predictor
    assert (first.in_features, first.out_features, norm.num_features) == (23, 46, 46)
    assert last.out_features == 32 and aux.w is None
    assert AuxLoss(named("curl-like"), 8, ACTIONS).w.shape == (8, 8)


@pytest.mark.parametrize("source, target", [
    (["s0", "a0", "a2", "r3"], ["s4", "a1", "a3", "r0", "r2"]),   # scattered offsets (index)
    (["s0", "a1", "a2", "a3", "r0", "r1"], ["s2", "a0", "r2", "r3"]),  # consecutive (slice)
])
def test_actions_and_rewards_of_the_genome_offsets_feed_each_side(monkeypatch, source, target):
    torch.manual_seed(0)
    genome = make(4, source, target)
    aux = AuxLoss(genome, feature_dim=2, action_dim=ACTIONS)
    b = 5
    action, reward = torch.randn(b, 4, ACTIONS), torch.randn(b, 4)
    states = torch.randn(1, b, 2)
    seen = {}
    aux.predictor.register_forward_hook(lambda m, args, out: seen.update(source=args[0]))
    monkeypatch.setattr("rl.aux_loss.similarity_loss",
                        lambda pred, tgt, *a: (seen.update(target=tgt) or (pred.sum(), {})))
    aux(states, states, action, reward)

    def offsets(names, kind):
        return [int(n[1:]) for n in sorted(names) if n[0] == kind]

    want_source = torch.cat([states[0], action[:, offsets(source, "a")].reshape(b, -1),
                             reward[:, offsets(source, "r")]], dim=1)
    want_target = torch.cat([states[0], action[:, offsets(target, "a")].reshape(b, -1),
                             reward[:, offsets(target, "r")]], dim=1)
    assert torch.equal(seen["source"], want_source)
    assert torch.equal(seen["target"], want_target)
