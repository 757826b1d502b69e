"""Test parameters for the accelerator paths: they run wherever a session has a device."""
import pytest
import torch


def devices() -> list:
    """``cpu``, and ``cuda`` where a CUDA device is present (skipped elsewhere)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device"))]
