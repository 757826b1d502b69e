"""Loss patterns of the paper's Table 5 (SPEC section 5), read for any horizon."""
from __future__ import annotations

from spaces.genome import Genome

PATTERNS = ("forward_dynamics", "inverse_dynamics", "reward_prediction", "action_inference",
            "state_reconstruction", "more_s_in_target", "more_a_in_target", "more_r_in_target")


def patterns(genome: Genome) -> dict[str, bool]:
    """Which Table-5 patterns a genome has: a pattern holds if it holds at some offset j."""
    src, tgt, k = genome.source, genome.target, genome.horizon

    def at_some_offset(need_src, need_tgt) -> bool:
        return any(all(e in src for e in need_src(j)) and all(e in tgt for e in need_tgt(j))
                   for j in range(k + 1))

    def count(side, kind) -> int:
        return sum(1 for kk, _ in side if kk == kind)

    return {
        "forward_dynamics": at_some_offset(lambda j: [("s", j), ("a", j)], lambda j: [("s", j + 1)]),
        "inverse_dynamics": at_some_offset(lambda j: [("a", j), ("s", j + 1)], lambda j: [("s", j)]),
        "reward_prediction": at_some_offset(lambda j: [("s", j), ("a", j)], lambda j: [("r", j)]),
        "action_inference": at_some_offset(lambda j: [("s", j), ("s", j + 1)], lambda j: [("a", j)]),
        "state_reconstruction": at_some_offset(lambda j: [("s", j)], lambda j: [("s", j)]),
        "more_s_in_target": count(tgt, "s") > count(src, "s"),
        "more_a_in_target": count(tgt, "a") > count(src, "a"),
        "more_r_in_target": count(tgt, "r") > count(src, "r"),
    }
