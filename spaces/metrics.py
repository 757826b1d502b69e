"""Size of the space and the distance between genomes by time offset (SPEC section 1)."""
from __future__ import annotations

from spaces.genome import KINDS, MAX_HORIZON, METRICS, MIN_HORIZON, SIDES, Genome, max_offset

OPERATOR_VARIANTS = len(METRICS) * 2  # 5 similarity metrics x negatives on/off


def space_size(elements_per_side=lambda k: 3 * k + 1) -> int:
    """Number of genomes over horizons 1..10: variants x sum_k 2^(2 * elements_per_side(k)).

    Our genome has 3k+1 elements per side (s_t..s_t+k, a and r up to t+k-1): 4.7e19.
    ``elements_per_side=lambda k: 3 * k + 3`` (a state, action and reward at each of k+1
    steps) reproduces the paper's 7.5e20.
    """
    return OPERATOR_VARIANTS * sum(2 ** (2 * elements_per_side(k))
                                   for k in range(MIN_HORIZON, MAX_HORIZON + 1))


def positions(genome: Genome) -> tuple:
    """64 positions: membership of every (side, kind, offset) up to the maximum horizon
    (2 x (11 + 10 + 10) = 62), then metric and negatives."""
    bits = tuple((kind, offset) in genome.side(side)
                 for side in SIDES for kind in KINDS
                 for offset in range(max_offset(kind, MAX_HORIZON) + 1))
    return bits + (genome.metric, genome.negatives)


def similarity(a: Genome, b: Genome) -> float:
    """Fraction of the 64 positions on which two genomes agree (1.0 = the same loss)."""
    pa, pb = positions(a), positions(b)
    return sum(x == y for x, y in zip(pa, pb)) / len(pa)
