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


def window_states(frames: np.ndarray, offsets: Sequence[int], frame_stack: int,
                  crop: int | None, device: torch.device) -> torch.Tensor:
    """States at ``offsets`` of a window, stacked offset-major.

    Args:
        frames: (B, k + S, *frame_shape) as ``Window.frames``.
        offsets: state offsets j (0..k).
        frame_stack: S.
        crop: output side of a random crop (uint8 images only); None = no crop.
        device: where the result lives.
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
    if crop > height or crop > width:
        raise ValueError(f"--image_size: cannot crop {crop} pixels out of {height}x{width} frames")
    # Corners from torch's global generator (the training loop seeds it), every corner in
    # [0, H - crop] (the released crop never used the last row/column: an off-by-one).
    tops = torch.randint(0, height - crop + 1, (len(offsets), b))
    lefts = torch.randint(0, width - crop + 1, (len(offsets), b))
    if device.type != "cpu":  # one gather on the device, not a Python loop on the host
        return gather_crops(torch.from_numpy(frames).to(device), offsets, s, crop,
                            tops.to(device), lefts.to(device))
    tops, lefts = tops.tolist(), lefts.tolist()
    out = np.empty((len(offsets), b, s, c, crop, crop), dtype=frames.dtype)
    for i, j in enumerate(offsets):
        for w in range(b):
            top, left = tops[i][w], lefts[i][w]
            out[i, w] = frames[w, j:j + s, :, top:top + crop, left:left + crop]
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
