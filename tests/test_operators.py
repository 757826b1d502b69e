"""Contract tests of the variation operators: every child is a valid canonical genome in 1..10."""
import random

import pytest

from spaces import MAX_HORIZON, METRICS, MIN_HORIZON, NAMED_LOSSES, Genome, GenomeError, reject_reason
from search.evolution import operators as ops

PARENTS = list(NAMED_LOSSES.values()) + [ops.random_genome(random.Random(i), 0.3) for i in range(20)]
PARENTS = [g.canonical() for g in PARENTS]


def _offsets(genome: Genome, offset: int) -> set:
    return {(side, kind) for side in ("source", "target") for kind, o in genome.side(side) if o == offset}


def _check_child(child: Genome) -> None:
    assert isinstance(child, Genome)
    assert MIN_HORIZON <= child.horizon <= MAX_HORIZON
    assert child == child.canonical()
    assert Genome.parse(str(child)) == child


@pytest.mark.parametrize("operator", ops.OPERATORS)
def test_every_operator_gives_valid_canonical_children(operator):
    rng = random.Random(0)
    for i in range(300):
        a, b = PARENTS[i % len(PARENTS)], PARENTS[(7 * i + 3) % len(PARENTS)]
        _check_child(ops.vary(rng, operator, [a, b], 0.3))


def test_bitflip_always_changes_masks_only():
    rng = random.Random(1)
    for parent in PARENTS:
        child = ops.bitflip(rng, parent)
        assert child != parent
        assert (child.metric, child.negatives) == (parent.metric, parent.negatives)
        assert child.horizon <= parent.horizon


def test_metric_changes_metric_or_negatives_only():
    rng = random.Random(2)
    changed = set()
    for parent in PARENTS * 3:
        child = ops.switch_metric(rng, parent)
        assert (child.source, child.target, child.horizon) == (parent.source, parent.target, parent.horizon)
        diff = (child.metric != parent.metric, child.negatives != parent.negatives)
        assert diff in ((True, False), (False, True))
        changed.add(diff)
    assert len(changed) == 2


def test_horizon_minus_drops_last_offset_and_plus_keeps_offsets():
    rng = random.Random(3)
    seen = set()
    for parent in PARENTS * 4:
        child = ops.shift_horizon(rng, parent)
        if child.horizon > parent.horizon:
            seen.add("+")
            assert child.horizon == parent.horizon + 1
            assert parent.source <= child.source and parent.target <= child.target
            assert len(child.source) + len(child.target) == len(parent.source) + len(parent.target) + 1
        else:
            seen.add("-")
            assert parent.horizon > MIN_HORIZON
            assert child == parent.with_horizon(parent.horizon - 1).canonical()
    assert seen == {"+", "-"}
    k1 = NAMED_LOSSES["curl-like"]
    assert all(ops.shift_horizon(rng, k1).horizon == 2 for _ in range(10))


def test_crossover_takes_each_offset_from_one_parent():
    rng = random.Random(4)
    for i in range(200):
        a, b = PARENTS[i % len(PARENTS)], PARENTS[(5 * i + 1) % len(PARENTS)]
        child = ops.crossover(rng, a, b)
        assert child.metric in (a.metric, b.metric) and child.negatives in (a.negatives, b.negatives)
        for offset in range(MAX_HORIZON + 1):
            assert _offsets(child, offset) in (_offsets(a, offset), _offsets(b, offset))


def test_random_genomes_pass_rejection_and_span_the_space():
    rng = random.Random(5)
    genomes = [ops.random_genome(rng, 0.3) for _ in range(400)]
    assert all(reject_reason(g) is None for g in genomes)
    assert {g.horizon for g in genomes} == set(range(MIN_HORIZON, MAX_HORIZON + 1))
    assert {g.metric for g in genomes} == set(METRICS) and {g.negatives for g in genomes} == {True, False}
    bits = sum(len(g.source) + len(g.target) for g in genomes)
    slots = sum(len(ops.positions_at(g.horizon)) for g in genomes)
    assert 0.2 < bits / slots < 0.45  # density 0.3, biased up a little by the rejection of empty sides


def test_choose_operator_respects_rates_and_arity():
    rng = random.Random(6)
    rates = dict.fromkeys(ops.OPERATORS, 0.0) | {"crossover": 1.0, "metric": 1.0}
    drawn = {ops.choose_operator(rng, rates, parents=2) for _ in range(200)}
    assert drawn == {"crossover", "metric"}
    assert {ops.choose_operator(rng, rates, parents=1) for _ in range(50)} == {"metric"}
    only_crossover = dict.fromkeys(ops.OPERATORS, 0.0) | {"crossover": 1.0}
    assert ops.choose_operator(rng, only_crossover, parents=1) == "bitflip"


def test_genome_from_text_reads_names_and_canonical_strings():
    assert ops.genome_from_text("a2-winner") == NAMED_LOSSES["a2-winner"]
    assert ops.genome_from_text("CURL_like") == NAMED_LOSSES["curl-like"]
    text = str(NAMED_LOSSES["spr-like"])
    assert ops.genome_from_text(text) == NAMED_LOSSES["spr-like"]
    for bad in ("a3-winner", "k4 s1/a1/r1 > s1/a0/r0 mse", ""):
        with pytest.raises(GenomeError) as err:
            ops.genome_from_text(bad)
        assert "\n" not in str(err.value)
