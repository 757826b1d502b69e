"""Presets (smoke, cpu, paper) and the resolved search setup that config.json stores.

A preset is three dicts of defaults (engine, training, dispatch); every value can be
overridden by a flag. :func:`build_setup` merges preset and flags into a frozen
:class:`SearchSetup`, validating everything before a run folder is touched.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from rl.config import TrainConfig, resolve
from search.evolution.engine import EngineConfig
from search.evolution.operators import genome_from_text
from search.runs.config import DispatchConfig
from spaces import Genome, GenomeError

# Per-candidate training for state tasks: the small dense OFE encoder of the A2LS README.
_STATE_NET = {"encoder_type": "ofe", "encoder_hidden_size": 40, "num_layers": 1}


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    engine: Mapping[str, Any]
    train: Mapping[str, Any]
    dispatch: Mapping[str, Any] = dataclasses.field(default_factory=dict)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "smoke",
        "CI check: 6 tiny cartpole_swingup (state) candidates, 2 generations, minutes on 2 cores",
        engine={"strategy": "generational", "population": 4, "budget": 6},
        train={"domain_name": "cartpole_swingup", **_STATE_NET, "batch_size": 64,
               "hidden_dim": 64, "num_train_steps": 2000, "init_steps": 100,
               "eval_freq": 1000, "num_eval_episodes": 1, "replay_buffer_capacity": 10_000},
    ),
    Preset(
        # Measured on this 2-core machine while 4 other jobs shared it (load ~5): one
        # candidate (cartpole_swingup states, 20k env steps = 2500 agent steps, batch 128,
        # hidden 256, 1 thread) trained in 114 s and learnt (eval return 37 -> 791, AULC 327);
        # cheetah_run took 223 s and barely moved (7 -> 52), too little signal for a search.
        # Idle, expect about half that: ~60 s a candidate, 2 at a time, so 40 candidates
        # take about 30-45 minutes idle and about an hour on a busy machine.
        "cpu",
        "a meaningful search on a 2-core laptop in about an hour: cartpole_swingup (state), "
        "20k env steps per candidate, population 10, budget 40",
        engine={"strategy": "generational", "population": 10, "budget": 40},
        train={"domain_name": "cartpole_swingup", **_STATE_NET, "batch_size": 128,
               "hidden_dim": 256, "num_train_steps": 20_000, "init_steps": 500,
               "eval_freq": 5000, "num_eval_episodes": 3, "replay_buffer_capacity": 20_000},
    ),
    Preset(
        # The paper's image search: pixel cheetah_run, the released code's training
        # hyper-parameters (TrainConfig defaults, SPEC section 6), population ~100, top 25%
        # survive (SPEC section 4), 7 stages = 100 + 6 x 75 new genomes. The shortened run
        # length per candidate is not published [open]; 100k env steps is our choice.
        "paper",
        "the paper's image search for a GPU cluster: pixel cheetah_run, paper training "
        "hyper-parameters, 100k env steps per candidate, population 100, top 25%, 7 stages",
        engine={"strategy": "generational", "population": 100, "budget": 550,
                "survivor_fraction": 0.25},
        train={"domain_name": "cheetah_run", "encoder_type": "pixel", "num_train_steps": 100_000,
               "eval_freq": 10_000, "num_eval_episodes": 10},
        dispatch={"cpus_per_trial": 2, "gpus_per_trial": 0.25},
    ),
)}

# TrainConfig fields a search sets per candidate, or that write files a search does not keep.
NOT_OVERRIDABLE = ("genome", "seed", "work_dir", "save_tb", "save_buffer", "save_video",
                   "save_model")


def has_gpu() -> bool:
    """An NVIDIA GPU on this machine, without importing torch (the driver stays light)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def auto_preset() -> tuple[str, str]:
    """The preset for ``python search.py`` without ``--preset``, and why."""
    if has_gpu():
        return "paper", "an NVIDIA GPU is present"
    return "cpu", "no GPU found"


@dataclasses.dataclass(frozen=True)
class SearchSetup:
    """Everything that defines a search run (config.json holds it)."""

    preset: str
    fitness: str                # "rl" or "planted:<canonical genome>"
    engine: EngineConfig
    train: TrainConfig          # resolved; genome and seed are set per candidate
    dispatch: DispatchConfig

    @property
    def planted_target(self) -> Genome | None:
        return Genome.parse(self.fitness[len("planted:"):]) if self.planted else None

    @property
    def planted(self) -> bool:
        return self.fitness.startswith("planted:")

    def to_config(self) -> dict[str, Any]:
        train = self.train.to_dict()
        # Set per candidate: storing the base values would only mislead a reader.
        for key in ("genome", "genome_canonical", "seed"):
            train.pop(key, None)
        engine = dataclasses.asdict(self.engine)
        engine["seed_losses"] = list(engine["seed_losses"])
        return {"preset": self.preset, "fitness": self.fitness, "search": engine,
                "train": train, "dispatch": self.dispatch.to_dict()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    dispatch_overrides: Mapping[str, Any] | None = None) -> "SearchSetup":
        engine = dict(config["search"])
        engine["seed_losses"] = tuple(engine.get("seed_losses", ()))
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        train = TrainConfig(**{k: v for k, v in config["train"].items() if k in train_fields})
        dispatch = DispatchConfig.from_dict({**config.get("dispatch", {}), **(dispatch_overrides or {})})
        return cls(config.get("preset", "?"), config["fitness"], EngineConfig(**engine),
                   resolve(train), dispatch)


def parse_fitness(text: str) -> str:
    """``rl`` or ``planted:NAME_OR_GENOME`` -> canonical form; ValueError naming --fitness."""
    text = text.strip()
    if text == "rl":
        return text
    if text.startswith("planted:"):
        try:
            return "planted:" + str(genome_from_text(text[len("planted:"):]))
        except GenomeError as err:
            raise ValueError(f"--fitness: {err}") from None
    raise ValueError(f"--fitness: expected 'rl' or 'planted:NAME_OR_GENOME', got {text!r}")


def build_setup(preset: str, *, engine: Mapping[str, Any] = {}, train: Mapping[str, Any] = {},
                dispatch: Mapping[str, Any] = {}, fitness: str = "rl") -> SearchSetup:
    """Preset defaults overridden by flags. Raises ValueError (one line naming the flag)."""
    if preset not in PRESETS:
        raise ValueError(f"--preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    p = PRESETS[preset]
    bad = sorted(set(train) & set(NOT_OVERRIDABLE))
    if bad:
        raise ValueError(f"--{bad[0]}: set per candidate by the search; it cannot be given")
    for text in engine.get("seed_losses", ()):
        try:
            genome_from_text(text)
        except GenomeError as err:
            raise ValueError(f"--seed_losses: {err}") from None
    try:
        engine_config = EngineConfig(**{**p.engine, **engine})
    except ValueError as err:  # EngineConfig names the field ("budget: expected ..."): make it the flag
        field = str(err).split(":", 1)[0]
        known = {f.name for f in dataclasses.fields(EngineConfig)}
        raise ValueError(f"--{err}" if field in known else str(err)) from None
    fitness = parse_fitness(fitness)
    train_config = resolve(TrainConfig(**{**p.train, **train}))
    if fitness == "rl":
        _check_task(train_config.task)
    dispatch_config = DispatchConfig(**{**p.dispatch, **dispatch})
    return SearchSetup(preset, fitness, engine_config, train_config, dispatch_config)


def _check_task(task: str) -> None:
    """Refuse an unknown task in the driver: in a trial it would fail every retry."""
    from rl.envs import parse_task  # imports dm_control (about a second); only when searching

    parse_task(task)


def run_name(setup: SearchSetup, stamp: str) -> str:
    """``results/<auto name>`` from the defining parameters, e.g. cpu-cheetah_run-generational-..."""
    what = "planted" if setup.planted else setup.train.task
    return f"{setup.preset}-{what}-{setup.engine.strategy}-{stamp}"

