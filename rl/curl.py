"""CURL's contrastive loss (``curl_sac``; SPEC section 2).

The anchor is the online encoder's feature of one crop, the positive the EMA target
encoder's feature of an independent crop of the same frames (on ``mlp``/``ofe`` there is no
augmentation, so both see the same vector); logits z_a^T W z_pos over the batch, InfoNCE
with the diagonal as positives. W is feature x feature: CURL's code accepts
``curl_latent_dim`` but never uses it, and neither do we. Like :class:`rl.aux_loss.AuxLoss`
the module owns only W, so no optimizer of it steps an encoder (SPEC defect 3). Stacked
members (``rl.population``): W (K, d, d), anchor and positive (K, B, d), terms (K,).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from rl.aux_loss import info_nce, per_member


class CurlLoss(nn.Module):
    def __init__(self, feature_dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.rand(feature_dim, feature_dim))

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor) -> dict[str, torch.Tensor]:
        """``anchor`` (B, d) with gradient, ``positive`` (B, d) without: named terms."""
        logits = anchor @ (self.w @ positive.detach().transpose(-2, -1))
        loss, accuracy = per_member(info_nce, logits)
        return {"loss_curl": loss, "curl_accuracy": accuracy}
