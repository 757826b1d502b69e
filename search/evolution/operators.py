"""Where new genomes come from: random sampling and the variation operators (SPEC section 4).

Every function takes the engine's ``random.Random`` and returns a *canonical* genome, so
that ids, deduplication and the population table all see one form per loss (SPEC
section 1). Sets of elements are always walked in sorted order: iterating a frozenset of
``(kind, offset)`` tuples follows string hashing, which changes between processes, and
the same seed must give the same search in a fresh process.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

from spaces import KINDS, MAX_HORIZON, METRICS, MIN_HORIZON, Genome, GenomeError, named, reject_reason
from spaces.genome import SIDES, max_offset

Position = tuple[str, str, int]  # (side, kind, offset)

# Variation operators by arity. Names are what the population table's `operator` column shows;
# the engine adds "seed" (a named loss), "random" (initial population, random search) and
# "fallback" (a fresh genome after too many refused children).
OPERATORS = ("bitflip", "crossover", "horizon", "metric", "fresh")


def positions_at(horizon: int) -> list[Position]:
    """Every mask bit of a genome with this horizon: 2 x (3k + 1), in a fixed order."""
    return [(side, kind, offset) for side in SIDES for kind in KINDS
            for offset in range(max_offset(kind, horizon) + 1)]


def _build(horizon: int, members: Sequence[Position], metric: str, negatives: bool) -> Genome:
    source = frozenset((k, o) for s, k, o in members if s == "source")
    target = frozenset((k, o) for s, k, o in members if s == "target")
    return Genome(horizon, source, target, metric, negatives).canonical()


def _members(genome: Genome) -> list[Position]:
    return [p for p in positions_at(genome.horizon) if (p[1], p[2]) in genome.side(p[0])]


def random_genome(rng: random.Random, density: float) -> Genome:
    """A random genome that the rejection protocol accepts: horizon uniform in 1..10,
    each mask bit set with probability ``density``, metric and negatives uniform.

    Refused draws are re-drawn here and never recorded: the protocol's refusals belong to
    mutation (SPEC section 4), and this is a sampler of the accepted space.
    """
    while True:
        horizon = rng.randint(MIN_HORIZON, MAX_HORIZON)
        members = [p for p in positions_at(horizon) if rng.random() < density]
        genome = _build(horizon, members, rng.choice(METRICS), rng.random() < 0.5)
        if reject_reason(genome) is None:
            return genome


def bitflip(rng: random.Random, genome: Genome) -> Genome:
    """Flip each source/target mask bit with probability 1/L (L bits), at least one."""
    bits = positions_at(genome.horizon)
    flips = {p for p in bits if rng.random() < 1.0 / len(bits)} or {rng.choice(bits)}
    members = set(_members(genome)) ^ flips
    return _build(genome.horizon, sorted(members), genome.metric, genome.negatives)


def switch_metric(rng: random.Random, genome: Genome) -> Genome:
    """Half the time another similarity metric, otherwise negatives toggled."""
    if rng.random() < 0.5:
        metric = rng.choice([m for m in METRICS if m != genome.metric])
        return genome.replace(metric=metric)
    return genome.replace(negatives=not genome.negatives)


def shift_horizon(rng: random.Random, genome: Genome) -> Genome:
    """Horizon -1 drops what no longer fits; horizon +1 keeps every element at its offset
    (Genome.with_horizon) and sets one random bit at the new last offset.

    The added bit is why +1 is an operator at all: on a canonical genome the bare +1 is
    the same loss (same canonical form), so it could only ever yield duplicates.
    """
    k = genome.horizon
    up = k == MIN_HORIZON or (k < MAX_HORIZON and rng.random() < 0.5)
    if not up:
        return genome.with_horizon(k - 1).canonical()
    longer = genome.with_horizon(k + 1)
    frontier = [(side, kind, max_offset(kind, k + 1)) for side in SIDES for kind in KINDS]
    added = rng.choice(frontier)
    return _build(k + 1, _members(longer) + [added], longer.metric, longer.negatives)


def crossover(rng: random.Random, a: Genome, b: Genome) -> Genome:
    """Align two parents by time offset; the child takes every element at offset j (both
    sides, all kinds) from one parent chosen per offset, metric and negatives from one
    parent each. Offsets past a parent's horizon hold nothing in that parent."""
    horizon = max(a.horizon, b.horizon)
    pa, pb = set(_members(a)), set(_members(b))
    members = []
    for offset in range(horizon + 1):
        donor = pa if rng.random() < 0.5 else pb
        members += [p for p in positions_at(horizon) if p[2] == offset and p in donor]
    metric = (a if rng.random() < 0.5 else b).metric
    negatives = (a if rng.random() < 0.5 else b).negatives
    return _build(horizon, members, metric, negatives)


def choose_operator(rng: random.Random, rates: dict[str, float], parents: int) -> str:
    """Draw an operator name with probability proportional to its rate; crossover needs two
    parents and is left out when fewer are available."""
    names = [n for n in OPERATORS if rates[n] > 0 and (n != "crossover" or parents >= 2)]
    if not names:  # only crossover was enabled and there is a single parent
        return "bitflip"
    return rng.choices(names, weights=[rates[n] for n in names])[0]


def vary(rng: random.Random, operator: str, parents: Sequence[Genome], density: float) -> Genome:
    """Apply one operator to its parents (crossover uses two, fresh none)."""
    table: dict[str, Callable[[], Genome]] = {
        "bitflip": lambda: bitflip(rng, parents[0]),
        "metric": lambda: switch_metric(rng, parents[0]),
        "horizon": lambda: shift_horizon(rng, parents[0]),
        "crossover": lambda: crossover(rng, parents[0], parents[1]),
        "fresh": lambda: random_genome(rng, density),
    }
    return table[operator]()


def genome_from_text(text: str) -> Genome:
    """A named loss ("a2-winner") or a canonical genome string, canonicalised.

    Raises GenomeError (a ValueError) with one line naming both accepted forms."""
    text = text.strip()
    if text and text[0] == "k" and text[1:2].isdigit():
        return Genome.parse(text).canonical()
    try:
        return named(text).canonical()
    except GenomeError as err:
        raise GenomeError(f"{err}; or give a canonical genome such as "
                          f"'k1 s10/a1/r0 > s01/a0/r0 mse'") from None
