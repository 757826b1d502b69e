"""SAC networks of A2LS (SPEC section 6): encoders, actor, twin critic.

An encoder is a *trunk* (the conv stack, or the dense layers of ``mlp``/``ofe``) followed
by a *head* (Linear -> LayerNorm, no tanh: the released code builds every encoder with
``output_logits=True``). The split is the released code's: the actor shares the critic's
trunk on pixels ("tie conv weights") but has its own head, and "detach the encoder" cuts
the graph between trunk and head. As in the released code only *conv* layers are tied:
for ``mlp``/``ofe`` the actor owns a separate trunk (which, detached from the actor loss by
default, keeps its initial weights).

Pixel trunks take uint8 (or float) images in any memory format; the 1/255 scaling is
folded into the first conv's weights (one elementwise pass fewer per image), and the
output is flattened in channels-last order, which is a free view when the input is
channels-last (measured on CPU: the first convolution, over 3 x frame_stack channels, runs
about 3x faster in that format; the 32-channel ones about as fast as in NCHW).

Stacked members (``rl.population``): every module here also runs K members of one shape at
once when its parameters carry a leading member axis (the lone layout with K in front, so
member k's weights are ``p[k]``). Inputs and outputs then have that axis first, (K, N, ...),
except pixel inputs, which are (N, K * channels, H, W): the members' images side by side on
the channel axis, for grouped convolutions (``groups=K``). Each member computes exactly what
its lone module computes; nothing mixes members (layer norms are per row, matrix multiplies
and convolutions per member).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)``; stacked (weight (K, out, in), x (K, ..., in)): one batched multiply."""
    weight, bias = layer.weight, layer.bias
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    out = torch.baddbmm(bias.unsqueeze(1), x.flatten(1, -2), weight.transpose(1, 2))
    return out.view(*x.shape[:-1], weight.shape[1])


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """``norm(x)``; stacked (weight (K, d), x (K, ..., d)): the per-member affine after."""
    if norm.weight.dim() == 1:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    normed = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return torch.addcmul(norm.bias.view(shape), normed, norm.weight.view(shape))


def members_of(weight: torch.Tensor, lone_dim: int) -> int:
    """K of a stacked weight (one more dimension than the lone ``lone_dim``), 0 for a lone one."""
    return weight.shape[0] if weight.dim() == lone_dim + 1 else 0


def weight_init(m: nn.Module) -> None:
    """The released init: orthogonal Linear weights, delta-orthogonal convolutions, zero bias."""
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight.data)
        m.bias.data.fill_(0.0)
    elif isinstance(m, nn.Conv2d):
        m.weight.data.fill_(0.0)
        m.bias.data.fill_(0.0)
        mid = m.weight.size(2) // 2
        nn.init.orthogonal_(m.weight.data[:, :, mid, mid], nn.init.calculate_gain("relu"))


# ------------------------------------------------------------------------ trunks
# On CPU a conv layer over more than ~128 images spills the caches: measured on 2 cores,
# 512 stacked 84x84 frames in one call cost ~15% more than in 4 chunks of 128. At 84x84
# with 9 channels a chunk's float input (32.5 MB) and feature maps (27.5 MB) also stay under
# glibc's largest mmap threshold (32 MiB), so with rl.allocator they are reused from the
# heap instead of being mapped anew each call.
CPU_CHUNK = 128


def cpu_chunked(fn, obs: torch.Tensor, members: int = 0) -> torch.Tensor:
    """``fn(obs)``, on CPU over at most ``CPU_CHUNK`` images at a time (outputs concatenated;
    with ``members``, obs holds K members' images side by side and outputs are (K, n, ...))."""
    if obs.device.type == "cpu" and obs.shape[0] > CPU_CHUNK:
        return torch.cat([fn(part) for part in obs.split(CPU_CHUNK)], dim=1 if members else 0)
    return fn(obs)


# Stacked members' convolutions: one grouped convolution (groups=K) per layer on an
# accelerator; on CPU K plain ones over the members' channel slices, which oneDNN runs ~1.5x
# faster than its grouped kernel (measured on this project's 2-core machine: 4 members x
# 128 images, 4 layers, forward + backward: 3.0 s against 4.9 s).
GROUPED_ON_CPU = False


class ConvTrunk(nn.Module):
    """``num_layers`` 3x3 convolutions of ``num_filters`` (stride 2, then 1), ReLU."""

    def __init__(self, obs_shape: tuple[int, ...], num_layers: int, num_filters: int):
        super().__init__()
        channels, size = obs_shape[0], obs_shape[-1]
        self.convs = nn.ModuleList([nn.Conv2d(channels, num_filters, 3, stride=2)])
        self.convs.extend(nn.Conv2d(num_filters, num_filters, 3, stride=1)
                          for _ in range(num_layers - 1))
        side = (size - 3) // 2 + 1 - 2 * (num_layers - 1)
        if side < 1:
            raise ValueError(f"--image_size: {size} is too small for {num_layers} conv layers")
        self.out_dim = num_filters * side * side

    @property
    def members(self) -> int:
        return members_of(self.convs[0].weight, 4)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return cpu_chunked(self._forward, obs, self.members)

    def _forward(self, obs: torch.Tensor) -> torch.Tensor:
        k = self.members
        weights, biases = [c.weight for c in self.convs], [c.bias for c in self.convs]
        if not k:
            return _convolve(obs, weights, biases).permute(0, 2, 3, 1).flatten(1)
        if obs.device.type == "cpu" and not GROUPED_ON_CPU:  # member m: channels m*c:(m+1)*c
            c = obs.shape[1] // k
            return torch.stack([_convolve(obs[:, m * c:(m + 1) * c], [w[m] for w in weights],
                                          [b[m] for b in biases]).permute(0, 2, 3, 1).flatten(1)
                                for m in range(k)])
        x = _convolve(obs, [w.flatten(0, 1) for w in weights], [b.flatten() for b in biases], k)
        n, _, height, width = x.shape  # each member's features in HWC order, as a lone trunk's
        return x.permute(0, 2, 3, 1).reshape(n, height, width, k, -1).permute(
            3, 0, 1, 2, 4).reshape(k, n, -1)


def _convolve(obs: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
              groups: int = 1) -> torch.Tensor:
    """The conv stack on uint8 images: 1/255 folded into the first layer's weights, stride 2
    then 1, in-place ReLUs (a convolution keeps its input for backward, not its output);
    uint8 becomes the weights' dtype (float32 in training; tests also run float64)."""
    x = F.conv2d(obs.to(weights[0].dtype), weights[0] * (1.0 / 255.0), biases[0], stride=2,
                 groups=groups).relu_()
    for weight, bias in zip(weights[1:], biases[1:]):
        x = F.conv2d(x, weight, bias, groups=groups).relu_()
    return x


class MlpTrunk(nn.Module):
    """``num_layers`` x (Linear(encoder_hidden_size) + ReLU)."""

    def __init__(self, obs_dim: int, num_layers: int, hidden: int):
        super().__init__()
        dims = [obs_dim] + [hidden] * num_layers
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        for layer in self.linears:
            obs = linear(obs, layer).relu_()
        return obs


class OfeTrunk(nn.Module):
    """OFENet-style dense layers: each layer's output is concatenated to its input."""

    def __init__(self, obs_dim: int, num_layers: int, hidden: int):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(obs_dim + i * hidden, hidden)
                                     for i in range(num_layers))
        self.out_dim = obs_dim + num_layers * hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        for layer in self.linears:
            obs = torch.cat([obs, linear(obs, layer).relu_()], dim=-1)
        return obs


class IdentityTrunk(nn.Module):
    """``--encoder_type identity`` (released code): the state vector itself, no parameters;
    with :class:`IdentityHead`, observations go straight into actor and critic."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.out_dim = obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs


class IdentityHead(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h


def make_trunk(encoder_type: str, obs_shape: tuple[int, ...], num_layers: int,
               num_filters: int, hidden: int) -> nn.Module:
    if encoder_type == "pixel":
        if len(obs_shape) != 3:
            raise ValueError(f"--encoder_type pixel needs image observations, got shape {obs_shape}")
        return ConvTrunk(obs_shape, num_layers, num_filters)
    if len(obs_shape) != 1:
        raise ValueError(f"--encoder_type {encoder_type} needs state vectors, got shape {obs_shape}")
    if encoder_type == "identity":
        return IdentityTrunk(obs_shape[0])
    trunk = {"mlp": MlpTrunk, "ofe": OfeTrunk}.get(encoder_type)
    if trunk is None:
        raise ValueError(f"--encoder_type: unknown encoder {encoder_type!r}")
    return trunk(obs_shape[0], num_layers, hidden)


def feature_dim_of(encoder_type: str, obs_shape: tuple[int, ...], num_layers: int,
                   hidden: int, encoder_feature_dim: int) -> int:
    """The released code widens the ``ofe`` feature to its trunk width (obs + layers x hidden);
    ``identity`` passes the observation on as it is."""
    if encoder_type == "identity":
        return obs_shape[0]
    return obs_shape[0] + num_layers * hidden if encoder_type == "ofe" else encoder_feature_dim


def make_head(trunk: nn.Module, feature_dim: int) -> nn.Module:
    """Trunk features to the encoder feature; nothing in between for the identity encoder."""
    return IdentityHead() if isinstance(trunk, IdentityTrunk) else Head(trunk.out_dim, feature_dim)


class Head(nn.Sequential):
    """Linear -> LayerNorm: trunk features to the encoder feature."""

    def __init__(self, in_dim: int, feature_dim: int):
        super().__init__(nn.Linear(in_dim, feature_dim), nn.LayerNorm(feature_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # The two layers' functions on their parameters: no module calls per layer (their
        # overhead counts on small CPU updates, where a head runs 5-7 times an update).
        return layer_norm(linear(h, self[0]), self[1])


class Encoder(nn.Module):
    """g_theta: trunk then head."""

    def __init__(self, trunk: nn.Module, feature_dim: int):
        super().__init__()
        self.trunk = trunk
        self.head = make_head(trunk, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, obs: torch.Tensor, detach_trunk: bool = False) -> torch.Tensor:
        def encode(x: torch.Tensor) -> torch.Tensor:
            h = self.trunk(x)
            return self.head(h.detach() if detach_trunk else h)

        if isinstance(self.trunk, ConvTrunk):
            # Trunk and head a chunk at a time: the chunks' feature maps (39200 floats an
            # image) are never concatenated, only their 50-d features.
            return cpu_chunked(encode, obs, self.trunk.members)
        return encode(obs)


# ------------------------------------------------------------------------ actor
def squashed_gaussian(mu: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor | None):
    """tanh-squashed Gaussian: (mean action, sampled action, log-prob) of the released actor.

    log-prob = Gaussian log-density of the pre-tanh sample (its noise part needs no
    gradient) minus the released tanh correction, sum of log(relu(1 - pi^2) + 1e-6).
    """
    if noise is None:
        return torch.tanh(mu), None, None
    pi = torch.tanh(torch.addcmul(mu, noise, log_std.exp()))
    gaussian = noise.pow(2).sum(-1, keepdim=True).mul_(-0.5).sub_(
        0.5 * math.log(2 * math.pi) * noise.size(-1))
    log_pi = gaussian - (log_std + torch.log(F.relu(1 - pi.pow(2)) + 1e-6)).sum(-1, keepdim=True)
    return torch.tanh(mu), pi, log_pi


class Actor(nn.Module):
    """Head on trunk features, then an MLP to (mu, log_std); log_std rescaled by tanh."""

    def __init__(self, trunk: nn.Module, feature_dim: int, hidden_dim: int, action_dim: int,
                 log_std_min: float, log_std_max: float):
        super().__init__()
        self.trunk = trunk  # the critic's trunk on pixels (tied), an own one on states
        self.head = make_head(trunk, feature_dim)
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 2 * action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, h: torch.Tensor, sample: bool = True, noise: torch.Tensor | None = None):
        """From trunk features ``h``: (mu, pi, log_pi, log_std); pi/log_pi None if not sample.

        ``noise``: the standard normal draw of the sample, shaped as ``mu`` (default: drawn
        here from torch's global generator; stacked members bring their own streams' draws).
        """
        # The MLP's layers as functions on their parameters (no module call per layer).
        first, _, second, _, last = self.mlp
        x = linear(self.head(h), first).relu_()
        x = linear(x, second).relu_()
        mu, log_std = linear(x, last).chunk(2, dim=-1)
        half_range = 0.5 * (self.log_std_max - self.log_std_min)  # tanh's [-1, 1] -> [min, max]
        log_std = torch.tanh(log_std).mul(half_range).add_(self.log_std_min + half_range)
        if not sample:
            noise = None
        elif noise is None:
            noise = torch.randn_like(mu)
        mu, pi, log_pi = squashed_gaussian(mu, log_std, noise)
        return mu, pi, log_pi, log_std


# ------------------------------------------------------------------------ critic
class TwinQ(nn.Module):
    """Two Q MLPs (Linear-ReLU-Linear-ReLU-Linear) evaluated as one batched module.

    Layers 1 and 2 are batched multiplies over the two heads (layer 1 reads the input
    broadcast to both heads, no copy), so the hidden activations stay (head, B, H) and
    contiguous: a layout that alternates (B, 2H) and (head, B, H) made the batched multiply
    and its backward copy the activations (~0.3 ms an update at batch 128 / hidden 256 on
    CPU). Layer 3 (one output each) is an elementwise product and a sum: as a batched
    multiply of inner size 1 its backward cost ~0.2 ms on CPU for 65k multiply-adds.
    Weights are stored (head, in, out); each head is initialised like its own orthogonal
    ``nn.Linear`` stack.
    """

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(2, in_dim, hidden_dim))  # (head, in, out)
        self.b1 = nn.Parameter(torch.zeros(2, 1, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(2, hidden_dim, hidden_dim))
        self.b2 = nn.Parameter(torch.zeros(2, 1, hidden_dim))
        self.w3 = nn.Parameter(torch.empty(2, 1, hidden_dim))  # (head, 1, in): nn.Linear's layout
        self.b3 = nn.Parameter(torch.zeros(2, 1))
        with torch.no_grad():
            for i in range(2):
                nn.init.orthogonal_(self.w1[i].T)
                nn.init.orthogonal_(self.w2[i].T)
                nn.init.orthogonal_(self.w3[i])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (2, B): both Q values; stacked, (K, B, in_dim) -> (K, 2, B)."""
        k = members_of(self.w1, 3)
        if not k:
            h = torch.baddbmm(self.b1, x.expand(2, *x.shape), self.w1).relu_()
            h = torch.baddbmm(self.b2, h, self.w2).relu_()
            return (h * self.w3).sum(-1) + self.b3
        # K members x 2 heads as one batch of 2K (the input copied for each head: a batched
        # multiply takes one batch stride, and the input is the smallest operand).
        x = x.unsqueeze(1).expand(k, 2, *x.shape[1:]).reshape(2 * k, *x.shape[1:])
        h = torch.baddbmm(self.b1.flatten(0, 1), x, self.w1.flatten(0, 1)).relu_()
        h = torch.baddbmm(self.b2.flatten(0, 1), h, self.w2.flatten(0, 1)).relu_()
        return ((h * self.w3.flatten(0, 1)).sum(-1) + self.b3.flatten(0, 1)).view(k, 2, -1)


class Critic(nn.Module):
    """Encoder g_theta and twin Q on [feature, action].

    With an ``action_encoder`` (``--use_action_embedding_for_Q``: the auxiliary loss's
    action embedding, a module with an ``out_dim``) Q reads [feature, embedding(action)].
    """

    def __init__(self, encoder: Encoder, action_dim: int, hidden_dim: int,
                 action_encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.action_encoder = action_encoder
        action_in = action_encoder.out_dim if action_encoder is not None else action_dim
        self.q = TwinQ(encoder.feature_dim + action_in, hidden_dim)

    def q_values(self, feature: torch.Tensor, action: torch.Tensor,
                 detach_action_encoder: bool = False) -> torch.Tensor:
        if self.action_encoder is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_action_encoder):
                action = self.action_encoder(action)
        return self.q(torch.cat([feature, action], dim=-1))

    def forward(self, obs: torch.Tensor, action: torch.Tensor,
                detach_trunk: bool = False) -> torch.Tensor:
        """``detach_trunk`` (``--detach_encoder``) also keeps the critic loss out of the
        action embedding, as released."""
        return self.q_values(self.encoder(obs, detach_trunk), action, detach_trunk)
