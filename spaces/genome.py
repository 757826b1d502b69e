"""The genome of one auxiliary loss (SPEC section 1).

A loss predicts a *target* set of trajectory elements from a *source* set, both drawn
from a window of horizon k: states s_t..s_{t+k}, actions a_t..a_{t+k-1}, rewards
r_t..r_{t+k-1}. We hold each side as a frozen set of ``(kind, offset)`` elements, which
makes the canonical form, crossover by offset and distance simple; the A2LS bit-string
flags are derived from it at the edges (parse once, print once).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Iterable, Mapping

KINDS = ("s", "a", "r")
METRICS = ("mse", "nmse", "inner_product", "bilinear_inner_product", "cos_sim")
MIN_HORIZON = 1
MAX_HORIZON = 10
SIDES = ("source", "target")

Element = tuple[str, int]


class GenomeError(ValueError):
    """A genome that cannot exist; the message names the offending field."""


def max_offset(kind: str, horizon: int) -> int:
    """Largest offset of ``kind`` in a window of ``horizon``: s_{t+k}, a/r_{t+k-1}."""
    return horizon if kind == "s" else horizon - 1


def _check_side(side: str, elements: Iterable[Element], horizon: int) -> frozenset[Element]:
    out = set()
    for element in elements:
        kind, offset = element
        if kind not in KINDS:
            raise GenomeError(f"{side}: unknown element kind {kind!r} (expected one of {KINDS})")
        if not isinstance(offset, int) or not 0 <= offset <= max_offset(kind, horizon):
            raise GenomeError(
                f"{side}: {kind}_t+{offset} lies outside a window of horizon {horizon}")
        out.add((kind, offset))
    return frozenset(out)


@dataclasses.dataclass(frozen=True)
class Genome:
    """One auxiliary loss: horizon, source and target elements, similarity, negatives."""

    horizon: int
    source: frozenset[Element]
    target: frozenset[Element]
    metric: str = "mse"
    negatives: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or not (
                MIN_HORIZON <= self.horizon <= MAX_HORIZON):
            raise GenomeError(
                f"--auxi_pred_horizon: expected an integer in {MIN_HORIZON}..{MAX_HORIZON}, "
                f"got {self.horizon!r}")
        if self.metric not in METRICS:
            raise GenomeError(
                f"--similarity_metric: unknown metric {self.metric!r} (expected one of "
                f"{', '.join(METRICS)})")
        object.__setattr__(self, "source", _check_side("source", self.source, self.horizon))
        object.__setattr__(self, "target", _check_side("target", self.target, self.horizon))
        object.__setattr__(self, "negatives", bool(self.negatives))

    # ----------------------------------------------------------------- views
    def side(self, side: str) -> frozenset[Element]:
        return self.source if side == "source" else self.target

    def offsets(self, side: str, kind: str) -> tuple[int, ...]:
        return tuple(sorted(o for k, o in self.side(side) if k == kind))

    def mask(self, side: str, kind: str, horizon: int | None = None) -> str:
        """Bit string over offsets 0..max_offset (the state mask includes offset k)."""
        k = self.horizon if horizon is None else horizon
        elements = self.side(side)
        return "".join("1" if (kind, o) in elements else "0"
                       for o in range(max_offset(kind, k) + 1))

    @property
    def min_horizon(self) -> int:
        """The smallest horizon that holds every element (SPEC section 1, canonical form)."""
        need = MIN_HORIZON
        for kind, offset in self.source | self.target:
            need = max(need, offset if kind == "s" else offset + 1)
        return need

    # -------------------------------------------------------- transformations
    def canonical(self) -> "Genome":
        return dataclasses.replace(self, horizon=self.min_horizon)

    def with_horizon(self, horizon: int) -> "Genome":
        """Change k keeping every element at its offset; what no longer fits is dropped."""
        if not MIN_HORIZON <= horizon <= MAX_HORIZON:
            raise GenomeError(f"--auxi_pred_horizon: {horizon} outside {MIN_HORIZON}..{MAX_HORIZON}")

        def fits(e: Element) -> bool:
            return e[1] <= max_offset(e[0], horizon)

        return Genome(horizon, frozenset(filter(fits, self.source)),
                      frozenset(filter(fits, self.target)), self.metric, self.negatives)

    def replace(self, **changes) -> "Genome":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------- identities
    def canonical_string(self) -> str:
        """Compact, parseable, horizon-reduced form, e.g.
        ``k4 s10000/a1111/r1101 > s01111/a0000/r0000 mse`` (state masks have k+1 bits)."""
        g = self.canonical()
        sides = ["/".join(f"{kind}{g.mask(side, kind)}" for kind in KINDS) for side in SIDES]
        op = g.metric + ("+neg" if g.negatives else "")
        return f"k{g.horizon} {sides[0]} > {sides[1]} {op}"

    @property
    def id(self) -> str:
        """Stable id: a hash of the canonical string (never Python's ``hash()``)."""
        return hashlib.sha1(self.canonical_string().encode()).hexdigest()[:10]

    def __str__(self) -> str:
        return self.canonical_string()

    # ------------------------------------------------------------ A2LS flags
    def to_flags(self) -> dict[str, object]:
        """The A2LS ``train.py`` flags, exactly as its README writes them."""
        k = self.horizon
        flags: dict[str, object] = {"auxi_pred_horizon": k}
        for side, prefix in (("source", "auxi_pred_input"), ("target", "auxi_pred_output")):
            for kind in KINDS:
                flags[f"{prefix}_{kind}"] = self.mask(side, kind)[:k]
            flags[f"{prefix}_s_"] = "1" if ("s", k) in self.side(side) else "0"
        flags["similarity_metric"] = self.metric
        flags["penalize_negative"] = self.negatives
        return flags

    def to_argv(self) -> list[str]:
        argv: list[str] = []
        for name, value in self.to_flags().items():
            if isinstance(value, bool):
                argv += [f"--{name}"] if value else []
            else:
                argv += [f"--{name}", str(value)]
        return argv

    @classmethod
    def from_flags(cls, flags: Mapping[str, object]) -> "Genome":
        """Parse the A2LS flags (keys without ``--``); missing masks mean all zeros."""
        k = flags.get("auxi_pred_horizon", 1)
        try:
            k = int(k)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise GenomeError(f"--auxi_pred_horizon: expected an integer, got {k!r}") from None
        if not MIN_HORIZON <= k <= MAX_HORIZON:
            raise GenomeError(
                f"--auxi_pred_horizon: expected an integer in {MIN_HORIZON}..{MAX_HORIZON}, got {k}")
        sides = {}
        for side, prefix in (("source", "auxi_pred_input"), ("target", "auxi_pred_output")):
            elements: set[Element] = set()
            for kind, length in (("s", k), ("a", k), ("r", k), ("s_", 1)):
                name = f"{prefix}_{kind}"
                bits = str(flags.get(name, "0" * length))
                if not re.fullmatch(r"[01]*", bits):
                    raise GenomeError(f"--{name}: {bits!r} holds characters other than 0 and 1")
                if len(bits) != length:
                    what = "always 1 character" if kind == "s_" else f"horizon {k}"
                    raise GenomeError(
                        f"--{name}: expected {length} characters ({what}), got {len(bits)} ({bits!r})")
                for i, bit in enumerate(bits):
                    if bit == "1":
                        elements.add(("s", k) if kind == "s_" else (kind, i))
            sides[side] = frozenset(elements)
        return cls(k, sides["source"], sides["target"], str(flags.get("similarity_metric", "mse")),
                   bool(flags.get("penalize_negative", False)))

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, object]:
        return self.to_flags()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Genome":
        return cls.from_flags(data)

    @classmethod
    def from_json(cls, text: str) -> "Genome":
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------ canonical parsing
    _CANONICAL = re.compile(
        r"^k(\d+)\s+s([01]+)/a([01]*)/r([01]*)\s*>\s*s([01]+)/a([01]*)/r([01]*)\s+"
        r"([a-z_]+)(\+neg)?$")

    @classmethod
    def parse(cls, text: str) -> "Genome":
        """Parse a canonical string (see :meth:`canonical_string`)."""
        m = cls._CANONICAL.match(text.strip())
        if not m:
            raise GenomeError(
                f"genome {text!r}: expected the form 'k4 s10000/a1111/r1101 > "
                f"s01111/a0000/r0000 mse[+neg]'")
        k = int(m.group(1))
        if not MIN_HORIZON <= k <= MAX_HORIZON:
            raise GenomeError(f"genome {text!r}: horizon {k} outside {MIN_HORIZON}..{MAX_HORIZON}")
        sides = []
        for masks in (m.group(2, 3, 4), m.group(5, 6, 7)):
            elements = set()
            for kind, bits in zip(KINDS, masks):
                want = max_offset(kind, k) + 1
                if len(bits) != want:
                    raise GenomeError(
                        f"genome {text!r}: {kind} mask needs {want} bits for horizon {k}, "
                        f"got {len(bits)}")
                elements |= {(kind, i) for i, b in enumerate(bits) if b == "1"}
            sides.append(frozenset(elements))
        return cls(k, sides[0], sides[1], m.group(8), bool(m.group(9)))


def make(horizon: int, source: Iterable[str], target: Iterable[str], metric: str = "mse",
         negatives: bool = False) -> Genome:
    """Build a genome from element names such as ``"s0"``, ``"a3"``, ``"r1"``."""

    def parse(names: Iterable[str]) -> frozenset[Element]:
        return frozenset((n[0], int(n[1:])) for n in names)

    return Genome(horizon, parse(source), parse(target), metric, negatives)
