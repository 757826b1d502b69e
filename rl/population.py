"""K members of one training config (one genome, K seeds) as one batched model.

A :class:`Population` is built from K lone agents (``rl.agent``), whose parameters and
persistent buffers it stacks on a new leading member axis, each tensor in the lone layout
with K in front (member k's weights are ``p[k]``). The networks, auxiliary and CURL losses
of ``rl.networks`` / ``rl.aux_loss`` / ``rl.curl`` run on such stacked modules as batched
multiplies, grouped convolutions (pixels) and per-member reductions, and the update passes
are the lone agent's own (``Agent.update``, written over an optional member axis), so each
member computes what its lone agent computes. What a population has K of:

* replay buffers (one per member, sampled each with its own generator, as the lone ones);
* random streams: member k's crops and policy noise come from its own ``torch.Generator``,
  drawn in the order and shapes a lone agent draws them from torch's global generator
  (:func:`make_population` starts each from the state a lone ``rl.train.train`` run of that
  seed has after building its agent, so a member and the lone run draw the same numbers);
* temperatures (``log_alpha`` of shape (K,)), target networks, BatchNorm statistics (each
  member normalised over its own batch, never over K x B).

One Adam (``rl.optim.Adam``) per loss steps the stacked parameters. Adam is elementwise, so
that is K independent Adams as long as the members' losses are *summed* (never averaged:
averaging scales every gradient by 1/K, which Adam undoes only up to its eps) and nothing
couples them (no joint gradient clipping). The sum selects each member's loss with
``torch.where`` on finite values: a member whose loss is not finite gets no gradient from
it (multiplying by a 0 mask would keep its NaN), and since no operation mixes members, its
NaN reaches no other member either. The training loop then drops it (:meth:`keep`), which
index-selects the member axis of every tensor, Adam's moments included, and leaves the
others' values untouched.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch

from rl.agent import Agent, make_agent
from rl.augment import MemberStates, center_crop
from rl.config import TrainConfig
from rl.optim import Adam


class Population(Agent):
    """K agents of one config as one: :class:`rl.agent.Agent`'s update on stacked tensors.

    Only the K-specific edges are its own: windows from K replays (``update`` takes one
    replay per member, in member order), per-member random streams, the finite-selected sum
    of member losses, one action per member from ``act``, metrics per member, and dropping
    members. Build it with :func:`make_population` or from lone agents and generators.
    """

    def __init__(self, agents: Sequence[Agent], generators: Sequence[torch.Generator]):
        # Deliberately not Agent.__init__: the structure (modules, tied trunks, the shared
        # action embedding, optimizer groups, EMA pairs) is a copy of member 0's, whose tensors
        # then get the members' values stacked, in place, so every reference to them holds.
        if not agents or len(generators) != len(agents):
            raise ValueError(f"--seeds: a population needs at least one member and one "
                             f"generator each, got {len(agents)} agents, {len(generators)} generators")
        first = agents[0]
        lone = first.config.replace(seed=0)
        if any(a.config.replace(seed=0) != lone for a in agents):
            raise ValueError("--seeds: the members of a population differ only in their seed")
        shell = copy.deepcopy(first)
        self.__dict__.update(shell.__dict__)
        self._stacked = _stack_members(shell, agents)
        self.optimizers = {name: Adam([(g["params"], g["lr"], g["betas"][0])
                                       for g in optimizer.param_groups])
                           for name, optimizer in shell.optimizers.items()}
        self.generators = list(generators)

    @property
    def members(self) -> int:
        return len(self.generators)

    # ------------------------------------------------------------------ hooks (see Agent)
    def _windows(self, replays, horizon: int) -> list:
        return [replay.sample(self.config.batch_size, horizon) for replay in replays]

    def _states(self, windows, offsets: tuple[int, ...]) -> MemberStates:
        return MemberStates([w.frames for w in windows], offsets, windows[0].frame_stack,
                            self.crop, self.device, self.generators)

    def _field(self, windows, name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(w, name) for w in windows])).to(self.device)

    def _noise(self, rows: int) -> torch.Tensor:
        """(K, rows, action_dim): member k's draw from its own stream, as a lone agent's
        ``randn_like`` draws it (drawn on the host, so the streams are the same on any device)."""
        draws = [torch.randn((rows, self.action_dim), generator=g) for g in self.generators]
        return torch.stack(draws).to(self.device)

    def _total(self, loss: torch.Tensor) -> torch.Tensor:
        """The members' (K,) losses summed, each non-finite one replaced by 0 (see the module
        docstring)."""
        return torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss)).sum()

    def _metrics(self, out: dict[str, torch.Tensor]) -> list[dict[str, float]]:
        with torch.no_grad():  # one op for all of them, one copy out
            values = torch.stack([v.float() for v in out.values()]).T.tolist()
        return [dict(zip(out.keys(), row)) for row in values]

    # ------------------------------------------------------------------ acting, updating
    def update(self, replays: Sequence, step: int,
               diagnostics: bool = True) -> list[dict[str, float]]:
        """One update of every member, member k on windows of ``replays[k]``; the metrics of
        each member (the keys of ``Agent.update``)."""
        if len(replays) != self.members:
            raise ValueError(f"Population.update: {len(replays)} replays for {self.members} members")
        return super().update(replays, step, diagnostics)

    @torch.no_grad()
    def act(self, obs: np.ndarray, sample: bool) -> np.ndarray:
        """(K, action_dim): member k's action for ``obs[k]`` (observations as the envs return
        them, stacked; pixels center-cropped here)."""
        if len(obs) != self.members:
            raise ValueError(f"Population.act: {len(obs)} observations for {self.members} members")
        if self.pixels:
            if self.crop is not None and obs.shape[-1] != self.crop:
                obs = center_crop(obs, self.crop)
            images = torch.as_tensor(np.ascontiguousarray(obs), device=self.device)
            x = images.view(1, -1, *images.shape[-2:]).contiguous(
                memory_format=torch.channels_last)  # members side by side on the channel axis
        else:
            x = torch.as_tensor(obs, device=self.device, dtype=torch.float32)[:, None]
        mu, pi, _, _ = self.actor(self.actor.trunk(x), sample=sample,
                                  noise=self._noise(1) if sample else None)
        return (pi if sample else mu)[:, 0].cpu().numpy()

    # ------------------------------------------------------------------ members
    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (indices into the current ones, in the new order): every
        stacked tensor, Adam's moments and the random streams are index-selected."""
        if not members or len(set(members)) != len(members) or not all(
                0 <= m < self.members for m in members):
            raise ValueError(f"Population.keep: need distinct indices in 0..{self.members - 1}, "
                             f"got {list(members)}")
        index = torch.as_tensor(list(members), device=self.device)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad()
            for group in optimizer.param_groups:
                for moment in group["exp_avgs"] + group["exp_avg_sqs"]:
                    moment.data = moment.data.index_select(0, index)
        for tensor in self._stacked:
            tensor.data = tensor.data.index_select(0, index)
        self.generators = [self.generators[m] for m in members]

    def member_state_dict(self, member: int) -> dict[str, dict]:
        """Member ``member``'s state in a lone agent's format (``Agent.load_state_dict``,
        ``--save_model``)."""
        state = {name: {key: t[member].clone() for key, t in module.state_dict().items()}
                 for name, module in self.modules().items()}
        state["log_alpha"] = {"log_alpha": self.log_alpha.detach()[member].clone()}
        return state

    def state_dict(self) -> dict[str, dict]:
        raise TypeError("Population.state_dict: save members with member_state_dict(k)")

    def load_state_dict(self, state: dict[str, dict]) -> None:
        raise TypeError("Population.load_state_dict: build a population from lone agents")


def _stack_members(shell: Agent, agents: Sequence[Agent]) -> list[torch.Tensor]:
    """Give each parameter and persistent buffer of ``shell`` (a deep copy of ``agents[0]``)
    the members' values stacked on a new leading axis, in place (``.data``); each tensor once,
    however many modules hold it. Returns the stacked tensors."""
    stacked, seen = [], set()
    for name, module in shell.modules().items():
        members = [agent.modules()[name].state_dict(keep_vars=True) for agent in agents]
        for key, tensor in module.state_dict(keep_vars=True).items():
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            tensor.data = torch.stack([m[key].detach() for m in members])
            stacked.append(tensor)
    shell.log_alpha.data = torch.stack([agent.log_alpha.detach() for agent in agents])
    return stacked + [shell.log_alpha]


def make_population(config: TrainConfig, obs_shape: tuple[int, ...], action_dim: int,
                    device: torch.device, seeds: Sequence[int]) -> Population:
    """One member per seed, each built as ``rl.train.train`` builds its lone agent for that
    seed (torch's global generator seeded with it) and given a random stream that continues
    from there; torch's global generator is left as the last member's build left it."""
    agents, generators = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        agents.append(make_agent(config.replace(seed=seed), obs_shape, action_dim, device))
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
        generators.append(generator)
    return Population(agents, generators)
