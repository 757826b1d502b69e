"""Where and how trials run: the dispatch settings both commands share, validated once.

``search.py`` calls the resources of a trial ``--cpus_per_candidate``/``--gpus_per_candidate``
and ``evaluate.py`` ``--cpus_per_run``/``--gpus_per_run``; both build one
:class:`DispatchConfig`, and a :class:`DispatchError` names the field, which each command
turns into its own flag (:meth:`DispatchError.as_flags`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping


class DispatchError(ValueError):
    """Bad dispatch settings, or a cluster that cannot hold one trial: one line for the
    user, naming ``field`` (a DispatchConfig field, or None)."""

    def __init__(self, text: str, field: str | None = None) -> None:
        self.text, self.field = text, field
        super().__init__(f"--{field}: {text}" if field else text)

    def as_flags(self, flags: Mapping[str, str]) -> "DispatchError":
        """The same error naming the command's flag for ``field`` (``flags[field]``)."""
        if self.field is None:
            return self
        err = DispatchError(self.text, flags.get(self.field, self.field))
        return err


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class DispatchConfig:
    """Where trials run; may change between sessions of one run (``--resume``)."""

    address: str | None = None            # None: an embedded local Ray instance
    num_cpus: int | None = None           # CPUs of the embedded instance (None: this machine's)
    cpus_per_trial: float = 1.0           # also the trial's torch threads (at least 1)
    gpus_per_trial: float = 0.0           # fractions share a GPU between trials
    max_failures: int = 2                 # retries of a crashed trial before it counts as failed
    max_concurrent: int | None = None     # None: as many as the cluster's resources hold
    members_per_trial: int = 1            # seeds of one loss trained as one batched model in
                                          # a trial, for runs never stopped (search/runs/cohorts.py)

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, want: str) -> None:
            if not ok:
                raise DispatchError(f"expected {want}, got {getattr(self, field)!r}", field)

        need(self.address is None or (isinstance(self.address, str) and self.address.strip() != ""),
             "address", "a Ray address such as auto or HOST:PORT")
        need(self.num_cpus is None or (_integer(self.num_cpus) and self.num_cpus >= 1),
             "num_cpus", "an integer >= 1")
        need(_number(self.cpus_per_trial) and self.cpus_per_trial > 0, "cpus_per_trial",
             "a number > 0")
        need(_number(self.gpus_per_trial) and self.gpus_per_trial >= 0, "gpus_per_trial",
             "a number >= 0")
        need(_integer(self.max_failures) and self.max_failures >= 0, "max_failures",
             "an integer >= 0")
        need(_integer(self.members_per_trial) and self.members_per_trial >= 1,
             "members_per_trial", "an integer >= 1")
        need(self.max_concurrent is None or (_integer(self.max_concurrent) and self.max_concurrent >= 1),
             "max_concurrent", "an integer >= 1")
        if self.address and self.num_cpus is not None:
            raise DispatchError("sizes an embedded instance; a cluster given by --address has "
                                "its own CPUs", "num_cpus")

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_trial))

    @property
    def resources(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DispatchConfig":
        """Also reads the search run folders written before the layout change, whose
        dispatch said ``cpus_per_candidate``/``gpus_per_candidate``."""
        renamed = {"cpus_per_candidate": "cpus_per_trial", "gpus_per_candidate": "gpus_per_trial"}
        values = {renamed.get(k, k): v for k, v in data.items()}
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields})
