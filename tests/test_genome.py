"""The genome language: round trips, validation, canonical form, rejection, distance, size."""
import json

import pytest

from spaces import (NAMED_LOSSES, Genome, GenomeError, make, named, patterns, positions,
                    reject_reason, similarity, space_size)
from spaces.rejection import COPIES_RAW_INPUT, EMPTY_SOURCE, EMPTY_TARGET, NO_STATE_IN_SOURCE

README_A2_WINNER = {
    "auxi_pred_horizon": "4", "auxi_pred_input_s": "1000", "auxi_pred_input_a": "1111",
    "auxi_pred_input_r": "1101", "auxi_pred_input_s_": "0", "auxi_pred_output_s": "0111",
    "auxi_pred_output_a": "0000", "auxi_pred_output_r": "0000", "auxi_pred_output_s_": "1",
    "similarity_metric": "mse"}
README_A2_WINNER_V = {
    "auxi_pred_horizon": "9", "auxi_pred_input_s": "101000001",
    "auxi_pred_input_a": "111111011", "auxi_pred_input_r": "000110001",
    "auxi_pred_input_s_": "0", "auxi_pred_output_s": "010100100",
    "auxi_pred_output_a": "000010000", "auxi_pred_output_r": "000000000",
    "auxi_pred_output_s_": "1", "similarity_metric": "mse"}


@pytest.mark.parametrize("name", sorted(NAMED_LOSSES))
def test_named_losses_round_trip_through_flags_json_and_canonical_string(name):
    g = named(name)
    assert Genome.from_flags(g.to_flags()) == g
    assert Genome.from_json(g.to_json()) == g
    assert Genome.parse(g.canonical_string()) == g.canonical()
    assert Genome.parse(g.canonical_string()).id == g.id
    argv = g.to_argv()
    flags = {argv[i][2:]: argv[i + 1] for i in range(0, len(argv) - 1, 2)
             if not argv[i + 1].startswith("--")}
    flags["penalize_negative"] = "--penalize_negative" in argv
    assert Genome.from_flags(flags) == g


@pytest.mark.parametrize("flags,name", [(README_A2_WINNER, "a2-winner"),
                                        (README_A2_WINNER_V, "a2-winner-v")])
def test_a2_winners_parse_from_the_readme_flags_and_print_them_back(flags, name):
    g = Genome.from_flags(flags)
    assert g == named(name)
    printed = {k: str(v) for k, v in g.to_flags().items() if k != "penalize_negative"}
    assert printed == flags


def test_a2_winner_elements_follow_the_readme_command():
    g = named("a2-winner")
    assert g.source == {("s", 0), ("a", 0), ("a", 1), ("a", 2), ("a", 3), ("r", 0), ("r", 1),
                        ("r", 3)}
    assert g.target == {("s", 1), ("s", 2), ("s", 3), ("s", 4)}  # _s_ is the state at offset k


@pytest.mark.parametrize("field,value,message", [
    ("auxi_pred_input_s", "10a0", "--auxi_pred_input_s"),
    ("auxi_pred_output_a", "000", "--auxi_pred_output_a: expected 4 characters"),
    ("auxi_pred_input_s_", "01", "--auxi_pred_input_s_"),
    ("auxi_pred_horizon", "11", "--auxi_pred_horizon"),
    ("auxi_pred_horizon", "0", "--auxi_pred_horizon"),
    ("auxi_pred_horizon", "four", "--auxi_pred_horizon"),
    ("similarity_metric", "l1", "--similarity_metric"),
])
def test_validation_names_the_field(field, value, message):
    with pytest.raises(GenomeError, match=message):
        Genome.from_flags({**README_A2_WINNER, field: value})


def test_elements_outside_the_window_are_refused():
    with pytest.raises(GenomeError, match="outside a window of horizon 2"):
        make(2, ["s0", "a2"], ["s1"])
    with pytest.raises(GenomeError):
        Genome.parse("k2 s100/a11/r00 > s01/a00/r00 mse")  # state mask too short


def test_genome_is_immutable_and_hashable():
    g = named("a2-winner")
    with pytest.raises(Exception):
        g.horizon = 3  # type: ignore[misc]
    assert len({g, Genome.from_flags(g.to_flags())}) == 1


def test_canonical_form_uses_the_smallest_horizon_and_keeps_offsets():
    g = make(4, ["s0", "a0"], ["s1"])
    assert g.canonical() == named("forward-dynamics")
    assert g.id == named("forward-dynamics").id
    assert g != named("forward-dynamics")  # the genome itself keeps its horizon (flags round trip)
    assert named("a2-winner").canonical().horizon == 4


def test_horizon_change_keeps_offsets_and_drops_what_no_longer_fits():
    g = named("a2-winner")
    up = g.with_horizon(5)
    assert up.source == g.source and up.target == g.target
    assert up.to_flags()["auxi_pred_output_s"] == "01111" and up.to_flags()["auxi_pred_output_s_"] == "0"
    down = g.with_horizon(3)
    assert ("s", 4) not in down.target and ("a", 3) not in down.source and ("r", 3) not in down.source
    assert down.source <= g.source and down.target <= g.target
    with pytest.raises(GenomeError):
        g.with_horizon(11)


def test_ids_are_stable_across_processes_and_differ_between_losses():
    # sha1 of the canonical string: fixed values, unlike Python's salted hash()
    assert named("a2-winner").id == "ae5bbd44b7"
    assert len({g.id for g in NAMED_LOSSES.values()}) == len(NAMED_LOSSES)


@pytest.mark.parametrize("genome,reason", [
    (Genome(1, frozenset(), frozenset({("s", 1)})), EMPTY_SOURCE),
    (Genome(1, frozenset({("s", 0)}), frozenset()), EMPTY_TARGET),
    (make(1, ["a0", "r0"], ["s1"]), NO_STATE_IN_SOURCE),
    (make(2, ["s0", "a0", "r1"], ["a0", "r1"]), COPIES_RAW_INPUT),
])
def test_each_rejection_rule(genome, reason):
    assert reject_reason(genome) == reason


def test_useful_losses_are_not_rejected():
    for g in NAMED_LOSSES.values():
        assert reject_reason(g) is None
    assert reject_reason(make(1, ["s0", "a0"], ["a0", "s1"])) is None  # not only a copy
    assert reject_reason(make(1, ["s0"], ["a0"])) is None  # predicts an action it doesn't hold


def test_distance_by_offset_has_64_positions():
    a, b = named("a2-winner"), named("a2-winner")
    assert len(positions(a)) == 64
    assert similarity(a, b) == 1.0
    # the same elements at another horizon are the same positions
    assert similarity(make(1, ["s0"], ["s1"]), make(5, ["s0"], ["s1"])) == 1.0
    one_flip = make(4, ["s0"], ["s1"])
    assert similarity(one_flip, make(4, ["s0", "a2"], ["s1"])) == pytest.approx(63 / 64)
    assert similarity(one_flip, one_flip.replace(metric="cos_sim", negatives=True)) == pytest.approx(62 / 64)


def test_space_size_and_the_papers_figure():
    ours = space_size()
    paper = space_size(lambda k: 3 * k + 3)
    assert f"{paper:.1e}" == "7.5e+20"  # paper: "about 7.5e20" (a state, action, reward per step)
    assert f"{ours:.1e}" == "4.7e+19"  # our genome: no a_{t+k}, r_{t+k} -> 3k+1 elements a side
    assert paper // ours == 16  # dominated by k=10: 2^(2*33) / 2^(2*31)


def test_patterns_of_named_losses():
    assert patterns(named("forward-dynamics"))["forward_dynamics"]
    assert patterns(named("inverse-dynamics"))["inverse_dynamics"]
    assert patterns(named("reward-prediction"))["reward_prediction"]
    assert patterns(named("action-inference"))["action_inference"]
    assert patterns(named("curl-like"))["state_reconstruction"]
    p = patterns(named("a2-winner"))
    assert p["more_s_in_target"] and p["forward_dynamics"] and not p["more_a_in_target"]


def test_unknown_named_loss():
    with pytest.raises(GenomeError, match="unknown loss 'nope'"):
        named("nope")
    assert named("A2_Winner") == named("a2-winner")


def test_json_is_plain_flags():
    d = json.loads(named("curl-like").to_json())
    assert d["penalize_negative"] is True and d["similarity_metric"] == "bilinear_inner_product"
