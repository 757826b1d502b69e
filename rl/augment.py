"""Stacked observations of a replay window, random- or center-cropped (SPEC sections 2, 6).

A window holds frames, not stacks: state s_{t+j} is ``frames[:, j:j+S]`` (S = frame stack).
:func:`window_states` builds the states at the requested offsets in one array, cropping
each (window, offset) once with one random crop for all S frames of that state, so a state
that appears on both sides of a loss is the same crop on both sides. Image batches come out
as uint8 channels-last tensors: the pixel encoder converts them to float itself (half the
bytes to move here) and CPU convolutions are faster in that layout. On CPU the crops are
copied in a loop (fastest there); on an accelerator the uncropped window goes over once and
one indexing op there cuts every crop (:func:`gather_crops`), so the host does no per-image
work (on CPU the loop and the conversion to channels-last cost ~60-90 ms an update at batch
128 with the A2-winner's 5 + 2 states).

:class:`MemberStates` does the same for the windows of K stacked members (``rl.population``),
each cropped with its own random stream, laid out as the member-aware networks take them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _as_images(states: np.ndarray, device: torch.device) -> torch.Tensor:
    """(n, B, C, H, W) uint8 numpy -> (n*B, C, H, W) channels-last tensor on ``device``."""
    n, b = states.shape[:2]
    images = torch.from_numpy(states).to(device).view(n * b, *states.shape[2:])
    return images.contiguous(memory_format=torch.channels_last)


def crop_corners(count: int, batch: int, height: int, width: int, crop: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop corners (tops, lefts), each (count, batch), from ``generator`` (default:
    torch's global one, which the training loop seeds), every corner in [0, H - crop] (the
    released crop never used the last row/column: an off-by-one)."""
    tops = torch.randint(0, height - crop + 1, (count, batch), generator=generator)
    lefts = torch.randint(0, width - crop + 1, (count, batch), generator=generator)
    return tops, lefts


def _copy_crops(frames: np.ndarray, offsets: Sequence[int], frame_stack: int, crop: int,
                tops: torch.Tensor, lefts: torch.Tensor, out: np.ndarray) -> None:
    """The host's crop loop: ``out[i, w]`` (S, C, crop, crop) = state ``offsets[i]`` of window w."""
    tops, lefts, s = tops.tolist(), lefts.tolist(), frame_stack
    for i, j in enumerate(offsets):
        for w in range(frames.shape[0]):
            top, left = tops[i][w], lefts[i][w]
            out[i, w] = frames[w, j:j + s, :, top:top + crop, left:left + crop]


def _check_crop(crop: int, height: int, width: int) -> None:
    if crop > height or crop > width:
        raise ValueError(f"--image_size: cannot crop {crop} pixels out of {height}x{width} frames")


def window_states(frames: np.ndarray, offsets: Sequence[int], frame_stack: int,
                  crop: int | None, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """States at ``offsets`` of a window, stacked offset-major.

    Args:
        frames: (B, k + S, *frame_shape) as ``Window.frames``.
        offsets: state offsets j (0..k).
        frame_stack: S.
        crop: output side of a random crop (uint8 images only); None = no crop.
        device: where the result lives.
        generator: the crops' random stream (default: torch's global generator).
    Returns:
        pixels: (len(offsets) * B, S*C, h, w) uint8, channels-last;
        states: (len(offsets) * B, obs_dim) float32 (no augmentation, SPEC section 2).
    """
    b = frames.shape[0]
    if frames.ndim == 3:  # state vectors: S is 1, s_{t+j} = frames[:, j]
        states = np.ascontiguousarray(frames[:, list(offsets)].swapaxes(0, 1))
        return torch.from_numpy(states).to(device).view(len(offsets) * b, -1)
    _, _, c, height, width = frames.shape
    s = frame_stack
    if crop is None or (crop == height and crop == width):
        states = np.stack([frames[:, j:j + s].reshape(b, s * c, height, width) for j in offsets])
        return _as_images(states, device)
    _check_crop(crop, height, width)
    tops, lefts = crop_corners(len(offsets), b, height, width, crop, generator)
    if device.type != "cpu":  # one gather on the device, not a Python loop on the host
        return gather_crops(torch.from_numpy(frames).to(device), offsets, s, crop,
                            tops.to(device), lefts.to(device))
    out = np.empty((len(offsets), b, s, c, crop, crop), dtype=frames.dtype)
    _copy_crops(frames, offsets, s, crop, tops, lefts, out)
    return _as_images(out.reshape(len(offsets), b, s * c, crop, crop), device)


def gather_crops(frames: torch.Tensor, offsets: Sequence[int], frame_stack: int, crop: int,
                 tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
    """The crops of :func:`window_states` as one indexing op on ``frames``' device.

    ``frames``: (B, k + S, C, H, W) uint8; ``tops``/``lefts``: (len(offsets), B) corners.
    The index tensors broadcast to (n, crop, crop, S), so the result comes out in
    channels-last memory order directly: (n, S*C, crop, crop) with NHWC strides. Fast on a
    GPU; on CPU it is ~7x slower than the copy loop, which the CPU path keeps.
    """
    b, s, dev = frames.shape[0], frame_stack, frames.device
    n = len(offsets) * b
    span = torch.arange(crop, device=dev)
    image = torch.arange(b, device=dev).repeat(len(offsets)).view(n, 1, 1, 1)
    step = (torch.as_tensor(offsets, device=dev).repeat_interleave(b).view(n, 1, 1, 1)
            + torch.arange(s, device=dev).view(1, 1, 1, s))
    rows = tops.reshape(n, 1, 1, 1) + span.view(1, crop, 1, 1)
    cols = lefts.reshape(n, 1, 1, 1) + span.view(1, 1, crop, 1)
    pixels = frames.permute(0, 1, 3, 4, 2)[image, step, rows, cols]  # (n, crop, crop, S, C)
    return pixels.view(n, crop, crop, -1).permute(0, 3, 1, 2)


def center_crop(obs: np.ndarray, size: int) -> np.ndarray:
    """Center crop of one (C, H, W) observation, as the released evaluation does."""
    height, width = obs.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return obs[..., top:top + size, left:left + size]


class WindowStates:
    """Encoder inputs of one window at a set of offsets (one crop each), sliced by offset.

    Offsets are stored in the given order, so a caller that lists the offsets of one
    batched encoder call next to each other gets that call's input as a view, not a copy.
    """

    def __init__(self, frames: np.ndarray, offsets: Sequence[int], frame_stack: int,
                 crop: int | None, device: torch.device):
        self.offsets = tuple(offsets)
        self.batch = frames.shape[0]
        self.x = window_states(frames, self.offsets, frame_stack, crop, device)

    def get(self, wanted: Sequence[int]) -> torch.Tensor:
        """(len(wanted) * B, ...) inputs of the states at ``wanted``, in that order."""
        b = self.batch
        pos = [self.offsets.index(j) for j in wanted]
        if pos == list(range(pos[0], pos[0] + len(pos))):
            return self.x[pos[0] * b:(pos[-1] + 1) * b]
        return torch.cat([self.x[p * b:(p + 1) * b] for p in pos])


class MemberStates:
    """:class:`WindowStates` of K stacked members: one window each, member k's crops drawn
    from ``generators[k]`` in the order a lone agent draws them (so each member sees the crops
    its lone run would see for the same stream state).

    Layout, as the member-aware networks take it: states (K, n * B, obs_dim); pixels
    (n * B, K * S * C, h, w) uint8 channels-last, the members' images side by side on the
    channel axis (one group each in a grouped convolution).
    """

    def __init__(self, frames: Sequence[np.ndarray], offsets: Sequence[int], frame_stack: int,
                 crop: int | None, device: torch.device, generators: Sequence[torch.Generator]):
        self.offsets, self.members = tuple(offsets), len(frames)
        self.batch = frames[0].shape[0]
        self.pixels = frames[0].ndim == 5
        self.x = self._build(frames, frame_stack, crop, device, generators)

    def _build(self, frames, s: int, crop: int | None, device: torch.device, generators):
        n, b, k, offsets = len(self.offsets), self.batch, self.members, list(self.offsets)
        if not self.pixels:  # (K, B, n, D) -> (K, n * B, D)
            states = np.stack([f[:, offsets] for f in frames]).swapaxes(1, 2)
            return torch.from_numpy(np.ascontiguousarray(states)).to(device).view(k, n * b, -1)
        _, _, c, height, width = frames[0].shape
        if crop is None or (crop == height and crop == width):
            side = (height, width)
            out = np.empty((n, b, k, s, c, height, width), dtype=frames[0].dtype)
            for m, f in enumerate(frames):
                for i, j in enumerate(offsets):
                    out[i, :, m] = f[:, j:j + s]
        else:
            _check_crop(crop, height, width)
            side = (crop, crop)
            corners = [crop_corners(n, b, height, width, crop, g) for g in generators]
            if device.type != "cpu":
                return self._gather(frames, s, crop, device, corners)
            out = np.empty((n, b, k, s, c, crop, crop), dtype=frames[0].dtype)
            for m, (f, (tops, lefts)) in enumerate(zip(frames, corners)):
                _copy_crops(f, offsets, s, crop, tops, lefts, out[:, :, m])
        images = torch.from_numpy(out).to(device).view(n * b, k * s * c, *side)
        return images.contiguous(memory_format=torch.channels_last)

    def _gather(self, frames, s: int, crop: int, device: torch.device, corners) -> torch.Tensor:
        """Accelerator path: the K uncropped windows go over once each, one gather cuts all."""
        n, b, k = len(self.offsets), self.batch, self.members
        whole = torch.empty((k * b, *frames[0].shape[1:]), dtype=torch.uint8, device=device)
        for m, f in enumerate(frames):
            whole[m * b:(m + 1) * b].copy_(torch.from_numpy(f))
        tops = torch.cat([t for t, _ in corners], dim=1).to(device)  # (n, K * B), member-major
        lefts = torch.cat([left for _, left in corners], dim=1).to(device)
        cut = gather_crops(whole, self.offsets, s, crop, tops, lefts)  # NHWC: (n, K, B, h, w, SC)
        cut = cut.permute(0, 2, 3, 1).reshape(n, k, b, crop, crop, -1).permute(0, 2, 3, 4, 1, 5)
        return cut.reshape(n * b, crop, crop, -1).permute(0, 3, 1, 2)

    def get(self, wanted: Sequence[int]) -> torch.Tensor:
        """The inputs of the states at ``wanted``, in that order (a view where they are stored
        next to each other): (K, len(wanted) * B, D) or (len(wanted) * B, K * S * C, h, w)."""
        b, dim = self.batch, 0 if self.pixels else 1
        pos = [self.offsets.index(j) for j in wanted]
        if pos == list(range(pos[0], pos[0] + len(pos))):
            return self.x.narrow(dim, pos[0] * b, len(pos) * b)
        return torch.cat([self.x.narrow(dim, p * b, b) for p in pos], dim=dim)
