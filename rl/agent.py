"""SAC with a genome-driven auxiliary loss (``auxi_sac``), CURL (``curl_sac``) or nothing
(``pixel_sac``): the released A2LS update, without its redundant encoder passes.

Optimizers: each loss steps each parameter once, through one optimizer (SPEC defect 3: the
released auxiliary step stepped the encoder with two optimizers). Parameter groups keep
the released learning rates and betas:

* ``critic``: critic loss -> critic encoder + twin Q (``critic_lr``, ``critic_beta``);
  with ``use_action_embedding_for_Q``, as a second group, the action embedding Q reads
  (``encoder_lr``, beta1 0.9, as the released extra optimizer).
* ``actor``: actor loss -> actor head + MLP and, only with ``update_encoder_with_actorloss``,
  the actor's trunk (its own on states, the tied conv trunk on pixels; detached from the
  actor loss otherwise, as released) (``actor_lr``, ``actor_beta``); and,
  as a second group, temperature loss -> log alpha (``alpha_lr``, ``alpha_beta``). One
  backward of their sum gives each its own gradient (the actor loss reads alpha detached,
  the temperature loss the log-probabilities detached), so one step equals the released
  two.
* ``representation``: auxiliary / CURL loss -> critic encoder (``encoder_lr``) and, as a
  second group, the loss module's parameters: predictor, embeddings, W (``encoder_lr``).

``use_action_embedding_for_Q`` (needs ``auxi_sac`` and ``action_embedding``): Q reads the
auxiliary loss's action embedding of the action instead of the raw action; the target
critic holds an EMA copy (``encoder_tau``) for the bootstrap. The actor loss passes its
gradient through the embedding to the policy's action, never to the embedding's weights
(the released code, with the encoder detached from the actor loss, its default, embedded
the policy action under ``no_grad``, so the actor got no gradient from Q at all).

Stacked members (``rl.population.Population``): the update passes below are written over an
optional leading member axis (reductions over the last dimensions, features unflattened on
dimension -2), so a population of K members runs exactly these passes on (K, ...) tensors.
What differs for K members is confined to a few hooks: where windows, crops and policy noise
come from (``_windows``, ``_states``, ``_field``, ``_noise``), how a loss is stepped
(``_total``) and how metrics come back (``_metrics``).
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from rl.augment import WindowStates, center_crop
from rl.aux_loss import AuxLoss, Embedding
from rl.config import TrainConfig
from rl.curl import CurlLoss
from rl.networks import Actor, Critic, Encoder, feature_dim_of, make_trunk, weight_init
from rl.optim import Adam


def _mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the last two dimensions: one value, or one per member."""
    if x.dim() == 2:
        return F.mse_loss(x, y)
    return F.mse_loss(x, y, reduction="none").mean((-2, -1))


def _ordered(first: tuple[int, ...], second: tuple[int, ...], extra: tuple[int, ...] = ()):
    """Offsets so that ``first`` and ``second`` each form one run (a view, not a copy)."""
    order = ([j for j in first if j not in second] + [j for j in first if j in second]
             + [j for j in second if j not in first])
    return tuple(order) + tuple(j for j in extra if j not in order)


class Agent:
    """See the module docstring; built by :func:`make_agent`."""

    def __init__(self, config: TrainConfig, obs_shape: tuple[int, ...], action_dim: int,
                 device: torch.device):
        c = self.config = config
        self.device, self.action_dim = torch.device(device), action_dim
        self.pixels = c.encoder_type == "pixel"
        if self.pixels and c.agent == "pixel_sac" and obs_shape[-1] != c.image_size:
            raise ValueError(f"--image_size: pixel_sac renders at --image_size {c.image_size}, "
                             f"got observations of size {obs_shape[-1]}")
        # pixel_sac renders at image_size: no crop. The others crop render size -> image_size.
        self.crop = c.image_size if self.pixels and c.agent != "pixel_sac" else None
        enc_shape = (obs_shape[0], c.image_size, c.image_size) if self.pixels else tuple(obs_shape)
        feature = feature_dim_of(c.encoder_type, enc_shape, c.num_layers, c.encoder_hidden_size,
                                 c.encoder_feature_dim)

        def trunk():
            return make_trunk(c.encoder_type, enc_shape, c.num_layers, c.num_filters,
                              c.encoder_hidden_size)

        # Q's action embedding is the auxiliary loss's (shared module), made here, before the
        # target critic copies the critic.
        q_embed = Embedding(action_dim, feature) if c.use_action_embedding_for_Q else None
        self.critic = Critic(Encoder(trunk(), feature), action_dim, c.hidden_dim,
                             action_encoder=q_embed).to(self.device)
        self.critic.encoder.apply(weight_init)
        # Only conv layers are tied (released code): on states the actor has its own trunk.
        self.tied = self.pixels
        actor_trunk = self.critic.encoder.trunk if self.tied else trunk()
        self.actor = Actor(actor_trunk, feature, c.hidden_dim, action_dim, c.actor_log_std_min,
                           c.actor_log_std_max).to(self.device)
        for part in (self.actor.head, self.actor.mlp) + (() if self.tied else (actor_trunk,)):
            part.apply(weight_init)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(
            torch.tensor(math.log(c.init_temperature), device=self.device))
        self.target_entropy = -float(action_dim)

        self.aux = self.curl = None
        if c.agent == "auxi_sac":
            self.aux = AuxLoss(c.genome, feature, action_dim, action_embedding=c.action_embedding,
                               reward_embedding=c.reward_embedding,
                               coef=c.auxi_coef, action_embed=self.critic.action_encoder
                               ).to(self.device)
        elif c.agent == "curl_sac":
            self.curl = CurlLoss(feature).to(self.device)

        # The actor's trunk (its own on states, the tied conv trunk on pixels) is detached from
        # the actor loss unless update_encoder_with_actorloss: then it is not stepped at all.
        actor_params = list(self.actor.head.parameters()) + list(self.actor.mlp.parameters())
        if c.update_encoder_with_actorloss:
            actor_params += list(actor_trunk.parameters())
        # What the actor + temperature losses differentiate (never the critic's weights).
        self._actor_grad = actor_params + [self.log_alpha]
        critic_groups = [(list(self.critic.encoder.parameters()) + list(self.critic.q.parameters()),
                          c.critic_lr, c.critic_beta)]
        if q_embed is not None:
            critic_groups.append((q_embed.parameters(), c.encoder_lr, 0.9))
        self.optimizers = {
            "critic": Adam(critic_groups),
            "actor": Adam([(actor_params, c.actor_lr, c.actor_beta),
                           ([self.log_alpha], c.alpha_lr, c.alpha_beta)]),
        }
        rep = self.aux if self.aux is not None else self.curl
        if rep is not None:  # the released encoder optimizer passes only lr: beta1 0.9
            self.optimizers["representation"] = Adam([
                (self.critic.encoder.parameters(), c.encoder_lr, 0.9),
                (rep.parameters(), c.encoder_lr, 0.9)])
        self._ema_pairs = [
            (list(self.critic_target.q.parameters()), list(self.critic.q.parameters()), c.critic_tau),
            (list(self.critic_target.encoder.parameters()), list(self.critic.encoder.parameters()),
             c.encoder_tau)]
        self._ema_pairs = [pair for pair in self._ema_pairs if pair[0]]  # identity: no encoder weights
        if q_embed is not None:
            self._ema_pairs.append((list(self.critic_target.action_encoder.parameters()),
                                    list(q_embed.parameters()), c.encoder_tau))
        self.train(True)

    # ------------------------------------------------------------------ acting
    def train(self, training: bool = True) -> None:
        self.training = training
        for module in (self.actor, self.critic, self.aux, self.curl):
            if module is not None:
                module.train(training)

    @torch.no_grad()
    def act(self, obs: np.ndarray, sample: bool) -> np.ndarray:
        """Action for one observation as the env returns it (pixels: center-cropped here)."""
        if self.pixels:
            if self.crop is not None and obs.shape[-1] != self.crop:
                obs = center_crop(obs, self.crop)
            x = torch.as_tensor(np.ascontiguousarray(obs), device=self.device)[None]
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = torch.as_tensor(obs, device=self.device, dtype=torch.float32)[None]
        mu, pi, _, _ = self.actor(self.actor.trunk(x), sample=sample)
        return (pi if sample else mu)[0].cpu().numpy()

    # ------------------------------------------------------------------ update
    def update(self, replay, step: int, diagnostics: bool = True) -> dict[str, float]:
        """One gradient step on windows sampled from ``replay``; returns named metrics.

        The losses of the step (``critic_loss``; ``actor_loss`` and ``alpha_loss`` on actor
        steps; ``aux_loss`` or ``curl_loss``) always; with ``diagnostics`` also
        ``batch_reward``, ``q_mean``, ``alpha``, ``actor_entropy`` and the loss module's
        extra terms (the training loop asks for them every ``log_interval`` steps, as the
        released code logged them; they cost ~1% of a small update).

        Order as in the released code: critic every step; actor and temperature every
        ``actor_update_freq``; target EMA every ``critic_target_update_freq``; the auxiliary
        (or CURL) loss every step. Encoder passes per update, each one call over all the time
        steps it covers (pixels: one crop per window time step, shared by every pass that
        reads that step; on CPU a pixel call walks its images in chunks of 128, see
        ``rl.networks.CPU_CHUNK``: encoder calls run trunk and head per chunk, trunk-only
        calls concatenate their chunks' feature maps):

        1. online trunk, s_{t+1} of the RL batch, no grad (the actor's next action);
        2. target encoder, s_{t+1} of the RL batch, no grad (critic target); with
           ``shared_window`` and ``auxi_ema`` also every auxiliary target state, in the
           same call (those targets then see the EMA weights of before this step's update);
        3. online encoder, s_t of the RL batch, with grad (critic loss);
        4. actor steps only: online trunk on s_t, no grad (the weights changed in pass 3's
           step). Taken from pass 5 instead when pass 5 holds the same crop of s_t (CURL
           always; ``shared_window`` with s_t in the source) and
           ``update_encoder_with_actorloss`` is off. On states the actor has its own trunk,
           which always runs; the critic's trunk on s_t then comes from pass 5 or its own
           pass;
        5. online trunk + head, auxiliary source states (CURL: the anchor, the RL batch's
           crop of s_t), with grad;
        6. target encoder, auxiliary target states (CURL: the positive, an independent crop
           of s_t), no grad, unless pass 2 already covered them; with ``auxi_ema=False`` the
           online encoder without grad, reusing pass 5 for states also in the source.

        ``shared_window=False`` (default, as released): the RL batch (horizon 1) and the
        auxiliary windows (horizon k) are sampled separately. ``shared_window=True``: one
        window of horizon k feeds both (the RL loss reads its first transition), as CURL
        shares its batch; pass 6 merges into pass 2 and pass 4 may drop out, and the last
        k-1 transitions of each episode never enter the RL batch.
        """
        c = self.config
        batch = self._sample(replay)
        out: dict[str, torch.Tensor] = {}
        if diagnostics:
            out["batch_reward"] = batch.reward.mean(-1)
        target_features = self._update_critic(batch, out, diagnostics)
        source = None
        if self._representation and not c.update_encoder_with_actorloss:
            source = self._source_pass(batch)  # the actor step cannot change these weights
        if step % c.actor_update_freq == 0:
            self._update_actor(batch, source, out, diagnostics)
        if step % c.critic_target_update_freq == 0:
            self._update_targets()
        if self._representation:
            if source is None:
                source = self._source_pass(batch)
            self._update_representation(batch, source, target_features, out, diagnostics)
        return self._metrics(out)

    def _metrics(self, out: dict[str, torch.Tensor]) -> dict[str, float]:
        with torch.no_grad():  # one op for all of them, one copy out
            values = torch.stack([v.float() for v in out.values()]).tolist()
        return dict(zip(out.keys(), values))

    @property
    def _representation(self) -> bool:
        return self.aux is not None or self.curl is not None

    # Hooks: a lone agent's sources of windows, crops and noise (a population has K of each).
    def _windows(self, replay, horizon: int):
        return replay.sample(self.config.batch_size, horizon)

    def _states(self, window, offsets: tuple[int, ...]) -> WindowStates:
        return WindowStates(window.frames, offsets, window.frame_stack, self.crop, self.device)

    def _field(self, window, name: str) -> torch.Tensor:
        return torch.from_numpy(getattr(window, name)).to(self.device)

    def _noise(self, rows: int) -> torch.Tensor | None:
        """The policy's standard normal draw for ``rows`` samples; None: the actor draws it
        from torch's global generator."""
        return None

    def _total(self, loss: torch.Tensor) -> torch.Tensor:
        """What one loss's backward runs from."""
        return loss

    def _sample(self, replay) -> "_Batch":
        c, aux = self.config, self.aux
        shared = aux is not None and c.shared_window
        window = self._windows(replay, aux.horizon if shared else 1)
        merged = tuple(aux.target_states) if shared and c.auxi_ema else ()
        target_pass = tuple(sorted({1, *merged}))
        if shared:
            # With auxi_ema off, pass 6 encodes the target states from this window too.
            src, targets = aux.source_states, tuple(aux.target_states)
            order = (_ordered(src, target_pass, (0,) + targets) if src
                     else _ordered((0,), target_pass, targets))
        else:
            order = (0, 1)
        rl = self._states(window, order)
        action, reward = self._field(window, "action"), self._field(window, "reward")
        batch = _Batch(rl=rl, action=action.select(-2, 0), reward=reward.select(-1, 0),
                       not_done=self._field(window, "not_done").select(-1, 0),
                       target_pass=target_pass, merged_targets=merged)
        if aux is not None:
            if shared:
                batch.aux, batch.aux_action, batch.aux_reward = rl, action, reward
            else:
                w = self._windows(replay, aux.horizon)
                batch.aux = self._states(w, _ordered(aux.source_states, aux.target_states))
                batch.aux_action, batch.aux_reward = self._field(w, "action"), self._field(w, "reward")
        if self.curl is not None:
            # Pixels: an independent crop of the same frames; states: the same vector.
            batch.positive = (self._states(window, (0,)).get((0,)) if self.pixels
                              else rl.get((0,)))
        return batch

    def _update_critic(self, batch: "_Batch", out: dict,
                       diagnostics: bool = False) -> torch.Tensor:
        """Passes 1-3; returns the target encoder's features of ``batch.target_pass``."""
        c, b = self.config, self.config.batch_size
        with torch.no_grad():
            _, next_pi, next_log_pi, _ = self.actor(self.actor.trunk(batch.rl.get((1,))),
                                                    noise=self._noise(b))
            features = self.critic_target.encoder(batch.rl.get(batch.target_pass)).unflatten(
                -2, (len(batch.target_pass), b))
            next_q = self.critic_target.q_values(
                features.select(-3, batch.target_pass.index(1)), next_pi)
            alpha = self.log_alpha.exp().unsqueeze(-1)
            next_v = next_q.min(-2).values - alpha * next_log_pi[..., 0]
            target_q = batch.reward + batch.not_done * c.discount * next_v
        q = self.critic(batch.rl.get((0,)), batch.action, detach_trunk=c.detach_encoder)
        # MSE of Q1 plus MSE of Q2 (the mean over both, doubled), per member
        critic_loss = 2.0 * _mse(q, target_q.unsqueeze(-2).expand_as(q))
        self._step(critic_loss, "critic")
        out["critic_loss"] = critic_loss
        if diagnostics:
            out["q_mean"] = q.detach().mean((-2, -1))
        return features

    def _source_pass(self, batch: "_Batch") -> dict:
        """Pass 5 (trunk part): online trunk features with grad of the source states.

        ``s0`` is the row block holding the RL batch's crop of s_t, if any (pass 4 reuses it).
        """
        if self.curl is not None:
            return {"h": self.critic.encoder.trunk(batch.rl.get((0,))), "s0": 0}
        src = self.aux.source_states
        h = self.critic.encoder.trunk(batch.aux.get(src)) if src else None
        s0 = src.index(0) if (batch.aux is batch.rl and 0 in src) else None
        return {"h": h, "s0": s0}

    def _update_actor(self, batch: "_Batch", source: dict | None, out: dict,
                      diagnostics: bool = False) -> None:
        c, b = self.config, self.config.batch_size
        obs = batch.rl.get((0,))
        reused = None
        if source is not None and source["s0"] is not None:
            reused = source["h"].narrow(-2, source["s0"] * b, b).detach()
        with_grad = c.update_encoder_with_actorloss
        with torch.set_grad_enabled(with_grad):  # pass 4
            if self.tied:
                actor_h = reused if (reused is not None and not with_grad) else self.actor.trunk(obs)
            else:
                actor_h = self.actor.trunk(obs)
        with torch.no_grad():
            critic_h = reused if reused is not None else (
                actor_h if self.tied else self.critic.encoder.trunk(obs))
            critic_feature = self.critic.encoder.head(critic_h)
        _, pi, log_pi, log_std = self.actor(actor_h, noise=self._noise(b))
        actor_q = self.critic.q_values(critic_feature, pi).min(-2).values
        alpha = self.log_alpha.exp()[..., None, None]  # () or (K,), before (B, 1) rows
        actor_loss = (alpha.detach()[..., 0] * log_pi[..., 0] - actor_q).mean(-1)
        alpha_loss = (alpha * (-log_pi.detach() - self.target_entropy)).mean((-2, -1))
        # inputs=: no gradient is computed for the critic's weights.
        self._step(actor_loss + alpha_loss, "actor", inputs=self._actor_grad)
        out.update(actor_loss=actor_loss, alpha_loss=alpha_loss)
        if diagnostics:
            with torch.no_grad():
                entropy = 0.5 * log_std.shape[-1] * (1.0 + math.log(2 * math.pi)) + log_std.sum(-1)
                out.update(alpha=self.log_alpha.exp(), actor_entropy=entropy.mean(-1))

    @torch.no_grad()
    def _update_targets(self) -> None:
        """EMA of the critic into its target: Q heads at ``critic_tau``, encoder at ``encoder_tau``.

        Without gradient: an in-place lerp towards parameters that require grad would record
        autograd history onto the target's tensors, one node more per target update for the
        whole run, holding the online parameters' gradient accumulators."""
        for target, online, tau in self._ema_pairs:
            torch._foreach_lerp_(target, online, tau)

    def representation_terms(self, replay) -> dict[str, torch.Tensor]:
        """The auxiliary / CURL loss terms of a freshly sampled batch, with their graph and
        without any optimizer step (for tests and diagnostics; ``update`` does the same)."""
        batch = self._sample(replay)
        features = None
        if batch.merged_targets:
            with torch.no_grad():
                features = self.critic_target.encoder(batch.rl.get(batch.target_pass)).unflatten(
                    -2, (len(batch.target_pass), self.config.batch_size))
        return self._representation_terms(batch, self._source_pass(batch), features)

    def _representation_terms(self, batch: "_Batch", source: dict,
                              target_features: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Pass 5 (head part) and pass 6; the named loss terms."""
        c, b, head = self.config, self.config.batch_size, self.critic.encoder.head
        if self.curl is not None:
            with torch.no_grad():
                positive = self.critic_target.encoder(batch.positive)
            return self.curl(head(source["h"]), positive)
        aux = self.aux
        src, tgt = aux.source_states, aux.target_states
        # (..., n, B, d): one row block per offset, after the member axis if any
        online = head(source["h"]).unflatten(-2, (len(src), b)) if src else None
        target = None
        if batch.merged_targets:
            target = torch.stack([target_features.select(-3, batch.target_pass.index(j))
                                  for j in tgt], dim=-3)
        elif tgt:
            with torch.no_grad():
                encoder = self.critic_target.encoder if c.auxi_ema else self.critic.encoder
                rest = tgt if c.auxi_ema else tuple(j for j in tgt if j not in src)
                encoded = encoder(batch.aux.get(rest)).unflatten(-2, (len(rest), b)) if rest else None
                target = torch.stack([encoded.select(-3, rest.index(j)) if j in rest
                                      else online.select(-3, src.index(j)).detach()
                                      for j in tgt], dim=-3)
        return aux(online, target, batch.aux_action, batch.aux_reward)

    def _update_representation(self, batch: "_Batch", source: dict,
                               target_features: torch.Tensor | None, out: dict,
                               diagnostics: bool = False) -> None:
        """One step of the ``encoder`` and ``aux`` optimizers on the auxiliary / CURL loss."""
        terms = self._representation_terms(batch, source, target_features)
        name = "curl" if self.curl is not None else "aux"
        loss = terms.pop(f"loss_{name}")
        self._step(loss, "representation")
        out[f"{name}_loss"] = loss
        if diagnostics:
            out.update(terms)

    def _step(self, loss: torch.Tensor, name: str, inputs: list | None = None) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad()
        self._total(loss).backward(inputs=inputs)
        optimizer.step()

    # ------------------------------------------------------------------ saving
    def modules(self) -> dict[str, torch.nn.Module]:
        named = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target,
                 "aux": self.aux, "curl": self.curl}
        return {k: v for k, v in named.items() if v is not None}

    def state_dict(self) -> dict[str, dict]:
        """Module state dicts by name (and the temperature), for ``--save_model``."""
        state = {name: module.state_dict() for name, module in self.modules().items()}
        state["log_alpha"] = {"log_alpha": self.log_alpha.detach().clone()}
        return state

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"]["log_alpha"])


@dataclasses.dataclass
class _Batch:
    """The tensors of one update: the RL batch and, if any, the auxiliary / CURL inputs."""
    rl: WindowStates
    # Shapes of a lone agent; a population's have a leading member axis (K, ...).
    action: torch.Tensor     # (B, action_dim) a_t
    reward: torch.Tensor     # (B,) r_t
    not_done: torch.Tensor   # (B,)
    target_pass: tuple[int, ...]     # offsets of pass 2, sorted
    merged_targets: tuple[int, ...]  # auxiliary target states encoded in pass 2
    aux: WindowStates | None = None
    aux_action: torch.Tensor | None = None  # (B, k, action_dim)
    aux_reward: torch.Tensor | None = None  # (B, k)
    positive: torch.Tensor | None = None    # CURL positive inputs


def make_agent(config: TrainConfig, obs_shape: tuple[int, ...], action_dim: int,
               device: torch.device) -> Agent:
    """The agent ``config.agent`` (a resolved config) for observations of ``obs_shape``
    (pixels: the render size, before the crop)."""
    return Agent(config, tuple(obs_shape), int(action_dim), torch.device(device))
