"""The auxiliary loss a :class:`spaces.Genome` describes (SPEC section 2).

Source: states through the online encoder g_theta (the caller encodes them, with
gradient), actions and rewards raw or through small learned embeddings; concatenated and
mapped by the predictor h: Linear(d, 2d) -> BatchNorm -> ReLU -> Linear(2d, d_target).
Target: states through the EMA target encoder without gradient (also the caller's job),
actions and rewards raw; concatenated. The module owns only h, the embeddings and the
bilinear W: the encoders stay outside its parameters, so no optimizer of this module can
step them (SPEC defect 3 came from the released module holding both encoders).

Similarities (``pred`` p_i, ``target`` t_i, batch of B):

* ``mse``: mean (p - t)^2; ``nmse``: the same on L2-normalised vectors.
* ``inner_product`` s_ij = p_i . t_j, ``bilinear_inner_product`` s_ij = t_i^T W p_j
  (rows are targets, as in the released code), ``cos_sim`` s_ij = cos(p_i, t_j).

With negatives: the contrastive metrics use InfoNCE over the B x B matrix with the diagonal
as positives; ``mse``/``nmse`` subtract the same distance to a rolled target (t_{i-1}: a
deterministic derangement, where the released code drew a permutation that could leave pairs
matched; SPEC defect 1: ``mse`` with negatives ran into a missing ``elif`` and raised). The
released ``mse`` with negatives is linear in the prediction and so unbounded below: a
property of that search-space point that we keep, not a defect we fix.

Without negatives (SPEC defect 4: the released code fed a diagonal-only matrix into a
cross-entropy), the contrastive metrics use positive-only forms:

* ``cos_sim``: mean(1 - s_ii), in [0, 2], zero exactly when every pair points the same way.
* ``inner_product``/``bilinear_inner_product``: mean softplus(-s_ii) = -log sigmoid(s_ii),
  the positive term of a logistic (NCE) loss: bounded below by 0 and decreasing in the
  positive similarity, with a gradient that fades as s_ii grows, so it cannot pull norms to
  infinity at a constant rate as -mean(s_ii) would (the released comment: "explode").

A normalised metric (``nmse``, ``cos_sim``) on a 1-d target (a single reward) compares
signs only and passes no gradient: a degenerate point of the search space, kept as is.

Stacked members (``rl.population``; see ``rl.networks``): with parameters that carry a
leading member axis K, :class:`AuxLoss` and :class:`Embedding` take and return tensors with
that axis first; the predictor's BatchNorm normalises each member over its own batch and
keeps its own running statistics, and the similarity is computed per member (the lone
function under ``torch.vmap``), so each term comes back as (K,).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rl.networks import layer_norm, linear
from spaces import Genome, build_error


class Embedding(nn.Module):
    """Action/reward embedding of the released code: Linear -> Linear -> LayerNorm -> tanh."""

    def __init__(self, in_dim: int, feature_dim: int):
        super().__init__()
        self.out_dim = feature_dim
        self.net = nn.Sequential(nn.Linear(in_dim, feature_dim), nn.Linear(feature_dim, feature_dim),
                                 nn.LayerNorm(feature_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second, norm, _ = self.net
        return torch.tanh(layer_norm(linear(linear(x, first), second), norm))


def stacked_batch_norm(x: torch.Tensor, norm: nn.BatchNorm1d) -> torch.Tensor:
    """A BatchNorm1d with stacked (K, C) parameters on x (K, B, C): each member over its own batch.

    The K members' channels side by side are K * C channels of one (B, K * C) batch norm,
    whose running statistics are views of the stacked (K, C) buffers.
    """
    k, b, c = x.shape
    if norm.training:
        norm.num_batches_tracked.add_(1)
    out = F.batch_norm(x.transpose(0, 1).reshape(b, k * c), norm.running_mean.view(-1),
                       norm.running_var.view(-1), norm.weight.view(-1), norm.bias.view(-1),
                       norm.training, norm.momentum, norm.eps)
    return out.view(b, k, c).transpose(0, 1)


def per_member(fn, *args: torch.Tensor):
    """``fn(*args)`` on 2-d tensors, or per member over a leading member axis (``vmap``)."""
    return fn(*args) if args[0].dim() == 2 else torch.vmap(fn)(*args)


def info_nce(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy with the diagonal as the positive of each row; (loss, top-1 accuracy)."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    accuracy = (logits.detach().argmax(1) == labels).float().mean()
    return F.cross_entropy(logits, labels), accuracy


def similarity_loss(pred: torch.Tensor, target: torch.Tensor, metric: str, negatives: bool,
                    w: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of ``pred`` against ``target`` (both (B, d)); see the module docstring."""
    metrics: dict[str, torch.Tensor] = {}
    if metric in ("mse", "nmse"):
        if metric == "nmse":
            pred, target = F.normalize(pred, dim=1), F.normalize(target, dim=1)
        loss = F.mse_loss(pred, target)
        if negatives:
            negative = F.mse_loss(pred, target.roll(1, dims=0))
            metrics["aux_negative_mse"] = negative.detach()
            loss = loss - negative
        return loss, metrics
    if metric == "cos_sim":
        pred, target = F.normalize(pred, dim=1), F.normalize(target, dim=1)
    if negatives:
        if metric == "bilinear_inner_product":
            logits = target @ (w @ pred.T)
        else:
            logits = pred @ target.T
        loss, metrics["aux_accuracy"] = info_nce(logits)
        return loss, metrics
    if metric == "bilinear_inner_product":
        positive = ((target @ w) * pred).sum(1)
    else:
        positive = (pred * target).sum(1)
    if metric == "cos_sim":
        return (1.0 - positive).mean(), metrics
    return F.softplus(-positive).mean(), metrics


class AuxLoss(nn.Module):
    """Predictor, embeddings and similarity of one genome.

    The caller encodes the states at ``source_states`` (online encoder, with gradient) and
    ``target_states`` (EMA target encoder, no gradient) and passes the features in.
    ``action_embed``: an existing action :class:`Embedding` to use as this loss's (the one
    Q reads with ``--use_action_embedding_for_Q``); it stays registered here too, so the
    loss's optimizer steps it.
    """

    def __init__(self, genome: Genome, feature_dim: int, action_dim: int, *,
                 action_embedding: bool = False, reward_embedding: bool = False,
                 coef: float = 1.0, action_embed: nn.Module | None = None):
        super().__init__()
        reason = build_error(genome)
        if reason:  # "empty source" / "empty target"
            raise ValueError(f"auxiliary loss {genome}: {reason} (a loss needs elements on "
                             f"both sides)")
        self.genome, self.coef = genome, float(coef)
        self.horizon = genome.horizon
        self.source_states = genome.offsets("source", "s")
        self.source_actions = list(genome.offsets("source", "a"))
        self.source_rewards = list(genome.offsets("source", "r"))
        self.target_states = genome.offsets("target", "s")
        self.target_actions = list(genome.offsets("target", "a"))
        self.target_rewards = list(genome.offsets("target", "r"))
        # Time steps picked from (B, k, ...) actions / rewards: a slice (a view) where the
        # offsets are consecutive, else an index buffer (indexing with a Python list costs
        # ~0.1 ms a call on CPU).
        self._windows: dict[str, slice | None] = {}
        for name in ("source_actions", "source_rewards", "target_actions", "target_rewards"):
            offsets = getattr(self, name)
            consecutive = offsets and offsets == list(range(offsets[0], offsets[-1] + 1))
            self._windows[name] = slice(offsets[0], offsets[-1] + 1) if consecutive else None
            if offsets and not consecutive:
                self.register_buffer(f"_{name}_index", torch.tensor(offsets), persistent=False)
        if action_embed is None and action_embedding and self.source_actions:
            action_embed = Embedding(action_dim, feature_dim)
        self.action_embed = action_embed
        self.reward_embed = (Embedding(1, feature_dim)
                             if reward_embedding and self.source_rewards else None)
        a_dim = self.action_embed.out_dim if self.action_embed is not None else action_dim
        r_dim = feature_dim if self.reward_embed is not None else 1
        d_in = (len(self.source_states) * feature_dim + len(self.source_actions) * a_dim
                + len(self.source_rewards) * r_dim)
        self.target_dim = (len(self.target_states) * feature_dim
                           + len(self.target_actions) * action_dim + len(self.target_rewards))
        self.predictor = nn.Sequential(nn.Linear(d_in, 2 * d_in), nn.BatchNorm1d(2 * d_in),
                                       nn.ReLU(inplace=True), nn.Linear(2 * d_in, self.target_dim))
        self.w = (nn.Parameter(torch.rand(self.target_dim, self.target_dim))
                  if genome.metric == "bilinear_inner_product" else None)

    def _pick(self, name: str, x: torch.Tensor, dim: int) -> torch.Tensor:
        """The time steps ``name`` of ``x`` along ``dim`` (the window axis)."""
        window = self._windows[name]
        if window is not None:
            return x.narrow(dim, window.start, window.stop - window.start)
        return x.index_select(dim, getattr(self, f"_{name}_index"))

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.predictor(x)
        first, norm, _, last = self.predictor
        return linear(stacked_batch_norm(linear(x, first), norm).relu_(), last)

    def forward(self, source_states: torch.Tensor | None, target_states: torch.Tensor | None,
                action: torch.Tensor, reward: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named terms: ``loss_aux`` (weighted by ``auxi_coef``) and detached diagnostics.

        Args:
            source_states: (len(source_states), B, d) online features, or None if none.
            target_states: (len(target_states), B, d) target features, or None if none.
            action: (B, k, action_dim) a_t .. a_{t+k-1}; reward: (B, k).
            Stacked members: each with a leading member axis (K, ...); terms come back (K,).
        """
        rows = action.shape[:-2]  # (B,), stacked (K, B)
        pieces = []
        if self.source_states:
            pieces.append(source_states.transpose(-3, -2).reshape(*rows, -1))
        if self.source_actions:
            a = self._pick("source_actions", action, -2)
            pieces.append((self.action_embed(a) if self.action_embed is not None else a
                           ).reshape(*rows, -1))
        if self.source_rewards:
            r = self._pick("source_rewards", reward, -1).unsqueeze(-1)
            pieces.append((self.reward_embed(r) if self.reward_embed is not None else r
                           ).reshape(*rows, -1))
        pred = self._predict(torch.cat(pieces, dim=-1))
        targets = []
        if self.target_states:
            targets.append(target_states.transpose(-3, -2).reshape(*rows, -1))
        if self.target_actions:
            targets.append(self._pick("target_actions", action, -2).reshape(*rows, -1))
        if self.target_rewards:
            targets.append(self._pick("target_rewards", reward, -1))
        target = torch.cat(targets, dim=-1).detach()
        metric, negatives = self.genome.metric, self.genome.negatives

        def similarity(pred, target, w=None):
            return similarity_loss(pred, target, metric, negatives, w)

        loss, metrics = per_member(similarity, pred, target, *(() if self.w is None else (self.w,)))
        return {"loss_aux": self.coef * loss, **metrics}
