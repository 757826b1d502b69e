"""The loss-rejection protocol (SPEC section 4): refuse useless losses before training."""
from __future__ import annotations

from spaces.genome import Genome

EMPTY_SOURCE = "empty source"
EMPTY_TARGET = "empty target"
NO_STATE_IN_SOURCE = "no state in the source"
COPIES_RAW_INPUT = "target only copies raw actions/rewards already in the source"


def build_error(genome: Genome) -> str | None:
    """Why this loss cannot be built at all (an empty side), or None."""
    if not genome.source:
        return EMPTY_SOURCE
    if not genome.target:
        return EMPTY_TARGET
    return None


def reject_reason(genome: Genome) -> str | None:
    """Why the search should not spend training on this loss, or None if it is worth it.

    Beyond the build errors: without a state in the source no gradient reaches the
    encoder (actions and rewards enter raw, the target side is detached); a target of raw
    actions/rewards that the source already holds is solved by copying. A state on both
    sides is *not* trivial (the target goes through the EMA encoder, as in CURL).
    """
    reason = build_error(genome)
    if reason:
        return reason
    if not any(kind == "s" for kind, _ in genome.source):
        return NO_STATE_IN_SOURCE
    if all(kind != "s" for kind, _ in genome.target) and genome.target <= genome.source:
        return COPIES_RAW_INPUT
    return None
