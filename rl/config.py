"""Typed, immutable training configuration: every flag of the released A2LS ``train.py``.

Defaults and meanings follow SPEC section 6 and the A2LS README. ``TrainConfig`` holds
what the user asked for (``None`` = "the per-task default"); :func:`resolve` fills the
per-task defaults once, at the edge, and returns a new config (nothing is mutated).
Step counts in the config (``num_train_steps``, ``eval_freq``, ``init_steps``) are
*environment* steps for ``num_train_steps`` and ``eval_freq`` (as in A2LS, divided by the
action repeat), and *agent* steps for ``init_steps`` (as in A2LS).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from spaces import Genome, named

AGENTS = ("auxi_sac", "pixel_sac", "curl_sac")
ENCODERS = ("pixel", "mlp", "ofe", "identity")

# (action repeat, total env steps) by task, as in the released train.py (SPEC section 6).
_LONG_TASKS = ("acrobot", "fish_swim", "hopper_hop", "humanoid", "pendulum", "quadruped",
               "swimmer")


def default_action_repeat(task: str) -> int:
    if task.startswith(("finger", "walker")):
        return 2
    if task.startswith("cartpole"):
        return 8
    return 4


def default_num_train_steps(task: str) -> int:
    return 2_000_000 if task.startswith(_LONG_TASKS) else 750_000


def default_lr(task: str) -> float:
    return 2e-4 if task.startswith("cheetah") else 1e-3


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # environment
    domain_name: str = "cheetah_run"
    task_name: Optional[str] = None
    pre_transform_image_size: int = 100
    image_size: int = 84
    action_repeat: Optional[int] = None
    frame_stack: int = 3
    # replay buffer
    replay_buffer_capacity: int = 100_000
    # train
    agent: str = "auxi_sac"
    init_steps: int = 1000
    num_train_steps: Optional[int] = None  # environment steps
    batch_size: int = 512
    hidden_dim: int = 1024
    # eval
    eval_freq: Optional[int] = None  # environment steps
    num_eval_episodes: int = 10
    # critic
    critic_lr: Optional[float] = None
    critic_beta: float = 0.9
    critic_tau: float = 0.01
    critic_target_update_freq: int = 2
    # actor
    actor_lr: Optional[float] = None
    actor_beta: float = 0.9
    actor_log_std_min: float = -10.0
    actor_log_std_max: float = 2.0
    actor_update_freq: int = 2
    # encoder
    encoder_type: str = "pixel"
    encoder_feature_dim: int = 50
    encoder_lr: Optional[float] = None
    encoder_tau: float = 0.05
    num_layers: int = 4
    num_filters: int = 32
    curl_latent_dim: int = 128
    encoder_hidden_size: int = 256
    use_action_embedding_for_Q: bool = False
    # sac
    discount: float = 0.99
    init_temperature: float = 0.1
    alpha_lr: float = 1e-4
    alpha_beta: float = 0.5
    # misc
    seed: int = -1
    work_dir: str = "."
    save_tb: bool = False
    save_buffer: bool = False
    save_video: bool = False
    save_model: bool = False
    detach_encoder: bool = False
    update_encoder_with_actorloss: bool = False
    log_interval: int = 100
    # auxiliary loss (the genome; default A2-winner, as the released code)
    genome: Genome = dataclasses.field(default_factory=lambda: named("a2-winner"))
    action_embedding: bool = False
    reward_embedding: bool = False
    auxi_batchsize: Optional[int] = None
    auxi_coef: float = 1.0
    augmentation_type: str = "crop"
    prediction_type: str = "mlp"
    auxi_ema: bool = True
    # ours (not in the released code)
    shared_window: bool = False  # one sampled window feeds RL and auxiliary loss
    device: str = "auto"

    @property
    def task(self) -> str:
        """``domain_task`` as A2LS names it (``cheetah_run``, ``ball_in_cup_catch``)."""
        if self.task_name:
            return f"{self.domain_name}_{self.task_name}"
        return self.domain_name

    @property
    def from_pixels(self) -> bool:
        return self.encoder_type == "pixel"

    @property
    def agent_steps(self) -> int:
        return int(self.num_train_steps) // int(self.action_repeat)

    @property
    def eval_every_agent_steps(self) -> int:
        return max(1, int(self.eval_freq) // int(self.action_repeat))

    @property
    def render_size(self) -> int:
        """``pixel_sac`` renders at ``image_size`` (no crop); the others crop from
        ``pre_transform_image_size`` (SPEC section 2)."""
        return self.image_size if self.agent == "pixel_sac" else self.pre_transform_image_size

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["genome"] = self.genome.to_flags()
        out["genome_canonical"] = str(self.genome)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The inverse of :meth:`to_dict` (JSON-safe: what a Ray trial receives); keys that
        are not fields (``genome_canonical``) are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if isinstance(values.get("genome"), dict):
            values["genome"] = Genome.from_flags(values["genome"])
        return cls(**values)


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every per-task default; validate values. Raises ValueError naming the flag."""
    task = config.task
    repeat = config.action_repeat or default_action_repeat(task)
    lr = default_lr(task)
    resolved = config.replace(
        action_repeat=repeat,
        num_train_steps=(config.num_train_steps if config.num_train_steps is not None
                         else default_num_train_steps(task)),
        eval_freq=config.eval_freq if config.eval_freq is not None else 10_000,
        actor_lr=config.actor_lr or lr,
        critic_lr=config.critic_lr or lr,
        encoder_lr=config.encoder_lr or lr,
        auxi_batchsize=config.auxi_batchsize or config.batch_size,
    )
    validate(resolved)
    return resolved


def validate(c: TrainConfig) -> None:
    def need(ok: bool, flag: str, problem: str) -> None:
        if not ok:
            raise ValueError(f"--{flag}: {problem}")

    need(c.agent in AGENTS, "agent", f"unknown agent {c.agent!r} (expected one of {', '.join(AGENTS)})")
    need(c.encoder_type in ENCODERS, "encoder_type",
         f"unknown encoder {c.encoder_type!r} (expected one of {', '.join(ENCODERS)})")
    for flag in ("num_train_steps", "eval_freq", "batch_size", "hidden_dim", "action_repeat",
                 "frame_stack", "replay_buffer_capacity", "num_eval_episodes", "image_size",
                 "pre_transform_image_size", "encoder_feature_dim", "num_layers",
                 "num_filters", "encoder_hidden_size", "actor_update_freq",
                 "critic_target_update_freq", "log_interval", "curl_latent_dim"):
        value = getattr(c, flag)
        need(value is not None and value > 0, flag, f"must be a positive integer, got {value}")
    need(c.encoder_type != "identity" or c.agent == "pixel_sac", "encoder_type",
         f"identity feeds the observations straight into actor and critic: there is no encoder "
         f"for {'an auxiliary' if c.agent == 'auxi_sac' else 'a CURL'} loss to shape "
         f"(use it with --agent pixel_sac)")
    need(c.init_steps >= 0, "init_steps", f"must be >= 0, got {c.init_steps}")
    need(c.image_size <= c.pre_transform_image_size or c.agent == "pixel_sac", "image_size",
         f"{c.image_size} is larger than --pre_transform_image_size {c.pre_transform_image_size}")
    need(c.augmentation_type == "crop", "augmentation_type", "only 'crop' is supported")
    need(c.prediction_type == "mlp", "prediction_type", "only 'mlp' is supported")
    need(c.auxi_batchsize == c.batch_size, "auxi_batchsize",
         "must equal --batch_size (the released code does not support another value either)")
    need(not c.use_action_embedding_for_Q or (c.agent == "auxi_sac" and c.action_embedding),
         "use_action_embedding_for_Q", "needs --agent auxi_sac and --action_embedding (Q reads "
         "the auxiliary loss's action embedding)")
    need(c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:"), "device",
         f"unknown device {c.device!r}")
