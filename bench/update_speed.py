"""Time one agent update (default: auxi_sac with the A2-winner loss) on synthetic replay data.

    python bench/update_speed.py --encoder_type pixel --batch_size 128 --steps 20
    python bench/update_speed.py --encoder_type ofe --encoder_hidden_size 40 --num_layers 1 \
        --batch_size 512 --hidden_dim 1024 --steps 20 [--released]

Cheetah-run shapes, no rendering: states of 17 floats, or 3x100x100 uint8 frames stacked
3 deep and cropped to 84; 6 actions. Prints the FLOPs of one update (FlopCounterMode: matrix
multiplies and convolutions), the achieved rate against this machine's 1024x1024 float32
matmul rate, the process CPU time per update (all threads), and ``ms_per_update=X`` (wall
clock) as the last line. Updates ask for their diagnostic metrics every ``log_interval``
steps, as ``rl.train`` does (the losses come back from every update). ``--released`` times
instead a
compact re-enactment of the released code's update (its sampler on its obs/next_obs
layout, its passes, per-time-step encoder calls, two Q modules, for-loop Adam, the
auxiliary step through two optimizers), so the two can be compared on the same machine;
it trains nothing and is used nowhere else. Each side samples from its own replay layout
filled with random data.
``--device cuda`` times ours on a GPU (the replay and its
sampling stay on the host, as in training; the re-enactment is CPU only).
``--alternate`` times both in one process, an update of each in turn, under one allocator
(by default tuned for pixels, glibc's for state vectors), and prints ``speedup=X`` (the
ratio of the two means) before the last line: the code's share of the speed-up. ``--allocator ours`` sets
glibc's malloc thresholds (``rl.allocator``), ``glibc`` leaves the defaults; by default
each side runs as it would in practice: ours as ``rl.train.train`` (tuned for pixel runs,
defaults for state vectors), the released re-enactment with glibc's defaults. The minor
page faults per update are printed too. ``bench/speedup.py`` alternates the two in fresh
processes and compares medians.
"""
from __future__ import annotations

import argparse
import copy
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rl.agent import make_agent  # noqa: E402
from rl import allocator as malloc_policy  # noqa: E402
from rl.config import TrainConfig, resolve  # noqa: E402
from rl.networks import feature_dim_of, weight_init  # noqa: E402
from rl.replay import ReplayBuffer  # noqa: E402

OBS_DIM, ACTION_DIM, FRAME, STACK, EPISODE = 17, 6, (3, 100, 100), 3, 250


def synthetic_replay(pixels: bool, transitions: int, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    stack = STACK if pixels else 1
    frame = FRAME if pixels else (OBS_DIM,)
    replay = ReplayBuffer(transitions + 10, frame, np.uint8 if pixels else np.float32,
                          ACTION_DIM, frame_stack=stack, seed=seed)

    def obs():
        if pixels:
            return rng.integers(0, 256, (3 * stack, *FRAME[1:]), dtype=np.uint8)
        return rng.standard_normal(OBS_DIM).astype(np.float32)

    for i in range(transitions):
        if i % EPISODE == 0:
            replay.start_episode(obs())
        replay.add(rng.uniform(-1, 1, ACTION_DIM), float(rng.standard_normal()), obs(), False)
    return replay


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device = torch.device("cpu")) -> float:
    """float32 1024x1024 matmul rate on ``device`` (FLOP/s)."""
    a, b = torch.rand(1024, 1024, device=device), torch.rand(1024, 1024, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    reps, start = 20, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * 1024 ** 3 * reps / (time.perf_counter() - start)


# ----------------------------------------------------------- released re-enactment (timing)
class _RefEncoder(nn.Module):
    def __init__(self, c: TrainConfig, shape, feature: int):
        super().__init__()
        self.pixels = c.encoder_type == "pixel"
        if self.pixels:
            convs = [nn.Conv2d(shape[0], c.num_filters, 3, 2)] + [
                nn.Conv2d(c.num_filters, c.num_filters, 3, 1) for _ in range(c.num_layers - 1)]
            self.layers = nn.ModuleList(convs)
            side = (shape[-1] - 3) // 2 + 1 - 2 * (c.num_layers - 1)
            width = c.num_filters * side * side
        else:
            dense, hidden = c.encoder_type == "ofe", c.encoder_hidden_size
            dims = ([shape[0] + i * hidden for i in range(c.num_layers)] if dense
                    else [shape[0]] + [hidden] * (c.num_layers - 1))
            self.layers = nn.ModuleList(nn.Linear(d, c.encoder_hidden_size) for d in dims)
            width = shape[0] + c.num_layers * c.encoder_hidden_size if dense else c.encoder_hidden_size
        self.dense = c.encoder_type == "ofe"
        self.fc, self.ln = nn.Linear(width, feature), nn.LayerNorm(feature)

    def forward(self, obs, detach=False):
        h = obs / 255.0 if self.pixels else obs
        for layer in self.layers:
            h = torch.cat([h, torch.relu(layer(h))], 1) if self.dense else torch.relu(layer(h))
        h = h.view(h.size(0), -1)
        return self.ln(self.fc(h.detach() if detach else h))


class _Released:
    """The released AuxiSacAgent.update's computation, for timing only."""

    def __init__(self, c: TrainConfig, shape, action_dim: int):
        self.c, g = c, c.genome
        feature = feature_dim_of(c.encoder_type, shape, c.num_layers, c.encoder_hidden_size,
                                 c.encoder_feature_dim)

        def q():
            return nn.Sequential(nn.Linear(feature + action_dim, c.hidden_dim), nn.ReLU(),
                                 nn.Linear(c.hidden_dim, c.hidden_dim), nn.ReLU(),
                                 nn.Linear(c.hidden_dim, 1))

        self.critic = nn.ModuleDict(dict(enc=_RefEncoder(c, shape, feature), q1=q(), q2=q()))
        self.critic.apply(weight_init)
        self.target = copy.deepcopy(self.critic)
        self.actor = nn.ModuleDict(dict(enc=_RefEncoder(c, shape, feature), mlp=nn.Sequential(
            nn.Linear(feature, c.hidden_dim), nn.ReLU(), nn.Linear(c.hidden_dim, c.hidden_dim),
            nn.ReLU(), nn.Linear(c.hidden_dim, 2 * action_dim))))
        self.actor.apply(weight_init)
        if c.encoder_type == "pixel":
            self.actor.enc.layers = self.critic.enc.layers  # tie convs
        self.log_alpha = torch.tensor(np.log(0.1), requires_grad=True)
        self.src, self.tgt = g.offsets("source", "s"), g.offsets("target", "s")
        d_in = len(self.src) * feature + len(g.offsets("source", "a")) * action_dim + len(
            g.offsets("source", "r"))
        d_out = len(self.tgt) * feature + len(g.offsets("target", "a")) * action_dim + len(
            g.offsets("target", "r"))
        self.auxi = nn.ModuleDict(dict(enc=self.critic.enc, enc_t=self.target.enc, pred=nn.Sequential(
            nn.Linear(d_in, 2 * d_in), nn.BatchNorm1d(2 * d_in), nn.ReLU(), nn.Linear(2 * d_in, d_out))))
        adam = torch.optim.Adam  # the for-loop implementation, as torch picks on CPU
        self.opt = dict(critic=adam(self.critic.parameters(), lr=1e-3, betas=(0.9, 0.999)),
                        actor=adam(self.actor.parameters(), lr=1e-3, betas=(0.9, 0.999)),
                        alpha=adam([self.log_alpha], lr=1e-4, betas=(0.5, 0.999)),
                        encoder=adam(self.critic.enc.parameters(), lr=1e-3),
                        auxi=adam(self.auxi.parameters(), lr=1e-3))

    def _pi(self, obs, detach=False):
        mu, log_std = self.actor.mlp(self.actor.enc(obs, detach)).chunk(2, -1)
        log_std = -10 + 6 * (torch.tanh(log_std) + 1)
        self.outputs = dict(mu=mu, std=log_std.exp())  # the released actor keeps these
        noise = torch.randn_like(mu)
        pi = torch.tanh(mu + noise * log_std.exp())
        log_pi = (-0.5 * noise.pow(2) - log_std).sum(-1, keepdim=True) - 0.5 * np.log(
            2 * np.pi) * noise.size(-1)
        log_pi -= torch.log(F.relu(1 - pi.pow(2)) + 1e-6).sum(-1, keepdim=True)
        torch.tanh(mu)  # its squash also returns the mean action
        return pi, log_pi, log_std

    def _q(self, net, obs, action, detach=False):
        x = torch.cat([net.enc(obs, detach), action], 1)
        return net.q1(x), net.q2(x)

    def update(self, replay: "_ReleasedReplay", step, diagnostics=True):
        """``diagnostics`` is ignored: the released logging (every log_interval steps) is
        left out of the re-enactment."""
        c, g = self.c, self.c.genome
        obs, action, reward, next_obs, not_done, window = replay.sample_auxi(
            c.batch_size, g.horizon, sorted(set(self.src) | set(self.tgt)))
        with torch.no_grad():
            pi, log_pi, _ = self._pi(next_obs)
            tq = torch.min(*self._q(self.target, next_obs, pi)) - self.log_alpha.exp() * log_pi
            tq = reward + not_done * 0.99 * tq
        q1, q2 = self._q(self.critic, obs, action)
        loss = F.mse_loss(q1, tq) + F.mse_loss(q2, tq)
        self.opt["critic"].zero_grad(), loss.backward(), self.opt["critic"].step()
        if step % 2 == 0:
            pi, log_pi, log_std = self._pi(obs, detach=True)
            loss = (self.log_alpha.exp().detach() * log_pi - torch.min(
                *self._q(self.critic, obs, pi, detach=True))).mean()
            # computed at every actor step, logged every log_interval steps
            0.5 * log_std.shape[1] * (1.0 + np.log(2 * np.pi)) + log_std.sum(dim=-1)
            self.opt["actor"].zero_grad(), loss.backward(), self.opt["actor"].step()
            loss = (self.log_alpha.exp() * (-log_pi - ACTION_DIM).detach()).mean()
            self.opt["alpha"].zero_grad(), loss.backward(), self.opt["alpha"].step()
            for net, tgt, tau in ((self.critic.q1, self.target.q1, 0.01),
                                  (self.critic.q2, self.target.q2, 0.01),
                                  (self.critic.enc, self.target.enc, 0.05)):
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.data.copy_(tau * p.data + (1 - tau) * tp.data)
        # Auxiliary step: every time step (cropped by the sampler) encoded on its own.
        states, a, r = window
        x = [self.critic.enc(states[j]) for j in self.src]
        x += [a[:, j] for j in g.offsets("source", "a")] + [r[:, j:j + 1] for j in g.offsets("source", "r")]
        with torch.no_grad():
            y = [self.target.enc(states[j]) for j in self.tgt]
        y += [a[:, j] for j in g.offsets("target", "a")] + [r[:, j:j + 1] for j in g.offsets("target", "r")]
        loss = F.mse_loss(self.auxi.pred(torch.cat(x, 1)), torch.cat(y, 1))
        self.opt["encoder"].zero_grad(), self.opt["auxi"].zero_grad(), loss.backward()
        self.opt["encoder"].step(), self.opt["auxi"].step()
        return {}


class _ReleasedReplay:
    """The released replay layout (obs and next_obs of every transition, stacked frames) and
    its ``sample_auxi``, for timing only: per window time step a fresh gather of obs and
    next_obs (each cropped on pixels), actions, rewards and not-dones, each converted to a
    tensor; the next index found by the released episode-end rule. Random data."""

    def __init__(self, pixels: bool, transitions: int, image_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        shape = (3 * STACK, *FRAME[1:]) if pixels else (OBS_DIM,)
        if pixels:
            self.obses, self.next_obses = (rng.integers(0, 256, (transitions, *shape), dtype=np.uint8)
                                           for _ in range(2))
        else:
            self.obses, self.next_obses = (rng.standard_normal((transitions, *shape), dtype=np.float32)
                                           for _ in range(2))
        self.actions = rng.uniform(-1, 1, (transitions, ACTION_DIM)).astype(np.float32)
        self.rewards = rng.standard_normal((transitions, 1)).astype(np.float32)
        self.not_dones = (np.arange(transitions) % EPISODE != EPISODE - 1).astype(np.float32)[:, None]
        self.size, self.last = transitions, transitions - 1
        self.crop = image_size if pixels else None

    def _crop(self, imgs):  # the released random_crop: a random window of each image
        if self.crop is None:
            return imgs
        n, top = len(imgs), imgs.shape[-1] - self.crop
        windows = np.lib.stride_tricks.sliding_window_view(
            imgs.transpose(0, 2, 3, 1), (1, self.crop, self.crop, 1))[..., 0, :, :, 0]
        return windows[np.arange(n), np.random.randint(0, top, n), np.random.randint(0, top, n)]

    def _next(self, idx):
        end = np.logical_or(np.logical_not(self.not_dones[idx]).reshape(-1), idx == self.last)
        return (idx + (1 - end)) % self.size

    def _gather(self, idx):
        return (torch.as_tensor(self._crop(self.obses[idx])).float(),
                torch.as_tensor(self._crop(self.next_obses[idx])).float(),
                torch.as_tensor(self.actions[idx]), torch.as_tensor(self.rewards[idx]),
                torch.as_tensor(self.not_dones[idx]))

    def sample_auxi(self, batch: int, horizon: int, offsets):
        """RL batch (obs, action, reward, next_obs, not_done) and the window:
        ({offset: states}, actions (B, k, A), rewards (B, k))."""
        obs, next_obs, action, reward, not_done = self._gather(np.random.randint(0, self.size, batch))
        states, actions, rewards = {}, [], []
        idx = np.random.randint(0, self.size, batch)
        for i in range(horizon):
            if i:
                idx = self._next(idx)
            s, s_next, a, r, _ = self._gather(idx)
            states[i] = s
            if i == horizon - 1:
                states[horizon] = s_next
            actions.append(a), rewards.append(r)
        window = ({j: states[j] for j in offsets}, torch.stack(actions, 1), torch.cat(rewards, 1))
        return obs, action, reward, next_obs, not_done, window


# ------------------------------------------------------------------------------ main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder_type", choices=("pixel", "ofe", "mlp"), default="pixel")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--hidden_dim", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--agent", choices=("auxi_sac", "curl_sac", "pixel_sac"), default="auxi_sac")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--encoder_hidden_size", type=int, default=256)
    p.add_argument("--num_layers", type=int, default=None, help="default: 4 pixel, 1 otherwise")
    p.add_argument("--shared_window", action="store_true")
    p.add_argument("--released", action="store_true", help="time the released update instead")
    p.add_argument("--allocator", choices=("ours", "glibc"), default=None,
                   help="malloc thresholds (default: ours for pixels as rl.train does, "
                        "glibc with --released or state vectors)")
    p.add_argument("--alternate", action="store_true",
                   help="ours and the released one in turn, in this process (one allocator)")
    p.add_argument("--device", default="cpu", help="where ours runs (cpu, cuda, cuda:N)")
    a = p.parse_args(argv)
    if min(a.batch_size, a.hidden_dim, a.steps, a.threads, a.encoder_hidden_size) < 1:
        p.error("--batch_size, --hidden_dim, --steps, --threads, --encoder_hidden_size must be >= 1")
    if (a.released or a.alternate) and a.agent != "auxi_sac":
        p.error("--released and --alternate re-enact auxi_sac only")
    if a.released and a.alternate:
        p.error("--alternate times both: leave out --released")
    try:
        device = torch.device(a.device)
    except RuntimeError:
        p.error(f"--device: unknown device {a.device!r}")
    if device.type != "cpu" and (a.released or a.alternate):
        p.error("--device: the released re-enactment runs on the CPU only")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device: {a.device} asked for, but torch sees no CUDA device")
    pixels = a.encoder_type == "pixel"
    # As rl.train.train: tuned for pixel runs (where it matters), glibc's defaults otherwise.
    allocator = a.allocator or (
        "ours" if malloc_policy.wanted(device.type, pixels) and not a.released else "glibc")
    if allocator == "ours" and not malloc_policy.keep_freed_memory():
        print("note: no glibc mallopt here; the allocator is left as it is")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    config = resolve(TrainConfig(
        domain_name="cheetah_run", agent=a.agent, encoder_type=a.encoder_type,
        batch_size=a.batch_size, hidden_dim=a.hidden_dim, encoder_hidden_size=a.encoder_hidden_size,
        num_layers=a.num_layers or (4 if pixels else 1), shared_window=a.shared_window,
        pre_transform_image_size=84 if a.agent == "pixel_sac" else 100))
    transitions = max(2 * EPISODE, 4 * a.batch_size)

    def build(released: bool):
        """(agent, replay): each update samples from its own replay layout."""
        if released:
            crop_shape = (3 * STACK, config.image_size, config.image_size) if pixels else (OBS_DIM,)
            return (_Released(config, crop_shape, ACTION_DIM),
                    _ReleasedReplay(pixels, transitions, config.image_size))
        shape = (3 * STACK, config.render_size, config.render_size) if pixels else (OBS_DIM,)
        return (make_agent(config, shape, ACTION_DIM, device),
                synthetic_replay(pixels, transitions))

    if a.alternate:
        return alternate(build(False), build(True), a.steps, allocator, config.log_interval)
    agent, replay = build(a.released)
    log = config.log_interval  # diagnostics as rl.train asks for them
    for step in range(2):  # warm-up (allocator, oneDNN primitive caches)
        agent.update(replay, step)
    with FlopCounterMode(display=False) as counter:
        agent.update(replay, 2, diagnostics=False)  # an actor step and a step without
        agent.update(replay, 3, diagnostics=False)
    flops = counter.get_total_flops() / 2
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(a.steps):
        agent.update(replay, 4 + step, diagnostics=(4 + step) % log == 0)
    sync(device)
    seconds = (time.perf_counter() - start) / a.steps
    cpu_ms = 1000 * (time.process_time() - cpu_start) / a.steps  # sturdier on a shared machine
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / a.steps
    peak = matmul_rate(device)
    what = "released re-enactment" if a.released else config.agent
    print(f"{what} {a.encoder_type} device={device} batch={a.batch_size} hidden={a.hidden_dim} "
          f"threads={a.threads} shared_window={a.shared_window} allocator={allocator}: "
          f"{flops / 1e9:.3f} GFLOP/update (mean of an actor and a non-actor step), {flops / seconds / 1e9:.1f} GFLOP/s "
          f"achieved vs {peak / 1e9:.1f} GFLOP/s matmul ({100 * flops / seconds / peak:.0f}%), "
          f"cpu_ms_per_update={cpu_ms:.2f}, minor_page_faults_per_update={faults:.0f}")
    print(f"ms_per_update={1000 * seconds:.2f}")


def alternate(ours, released, steps: int, allocator: str, log_interval: int) -> None:
    """Ours and the released re-enactment (each an ``(agent, replay)``) in turn, an update
    each, ``steps`` rounds: a slow spell of the machine hits both alike. Both run under the
    same allocator."""
    for step in range(4):  # warm-up
        for agent, replay in (ours, released):
            agent.update(replay, step)
    times: dict[str, list[float]] = {"ours": [], "released": []}
    for step in range(4, 4 + steps):
        for name, (agent, replay) in (("ours", ours), ("released", released)):
            start = time.perf_counter()
            agent.update(replay, step, diagnostics=step % log_interval == 0)
            times[name].append(time.perf_counter() - start)
    ratios = sorted(r / o for o, r in zip(times["ours"], times["released"]))
    ours_ms, released_ms = (1000 * sum(times[k]) / steps for k in ("ours", "released"))
    print(f"alternating {steps} rounds, allocator={allocator}: released {released_ms:.2f} ms/update, "
          f"ours {ours_ms:.2f} ms/update; per-round speed-up median "
          f"{ratios[len(ratios) // 2]:.2f}x (min {ratios[0]:.2f}, max {ratios[-1]:.2f})")
    print(f"speedup={released_ms / ours_ms:.2f}")
    print(f"ms_per_update={ours_ms:.2f}")


if __name__ == "__main__":
    main()
