"""Named losses of the paper's Table 1 and the A2LS README, each a genome (SPEC section 3)."""
from __future__ import annotations

from spaces.genome import Genome, GenomeError, make


def _a2ls(horizon, in_s, in_a, in_r, in_s_, out_s, out_a, out_r, out_s_) -> Genome:
    return Genome.from_flags({
        "auxi_pred_horizon": horizon,
        "auxi_pred_input_s": in_s, "auxi_pred_input_a": in_a,
        "auxi_pred_input_r": in_r, "auxi_pred_input_s_": in_s_,
        "auxi_pred_output_s": out_s, "auxi_pred_output_a": out_a,
        "auxi_pred_output_r": out_r, "auxi_pred_output_s_": out_s_,
        "similarity_metric": "mse"})


NAMED_LOSSES: dict[str, Genome] = {
    "forward-dynamics": make(1, ["s0", "a0"], ["s1"]),
    "inverse-dynamics": make(1, ["a0", "s1"], ["s0"]),
    "reward-prediction": make(1, ["s0", "a0"], ["r0"]),
    "action-inference": make(1, ["s0", "s1"], ["a0"]),
    "curl-like": make(1, ["s0"], ["s0"], "bilinear_inner_product", True),
    "atc-like": make(3, ["s0"], ["s1", "s2", "s3"], "bilinear_inner_product", True),
    "spr-like": make(5, ["s0", "a0", "a1", "a2", "a3", "a4"],
                     ["s1", "s2", "s3", "s4", "s5"], "nmse"),
    # The README's formula for A2-winner disagrees with its command; the command is what ran.
    "a2-winner": _a2ls(4, "1000", "1111", "1101", "0", "0111", "0000", "0000", "1"),
    "a2-winner-v": _a2ls(9, "101000001", "111111011", "000110001", "0",
                         "010100100", "000010000", "000000000", "1"),
}


def named(name: str) -> Genome:
    key = name.strip().lower().replace("_", "-")
    if key not in NAMED_LOSSES:
        raise GenomeError(f"unknown loss {name!r} (known: {', '.join(NAMED_LOSSES)})")
    return NAMED_LOSSES[key]
