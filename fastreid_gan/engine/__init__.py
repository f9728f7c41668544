"""The method-agnostic GAN engine: meta-arch interface, trainer, optimizers/schedules, launcher.

See ``docs/engine.md``.
"""
from .config import add_gan_engine_config, optimizer_node
from .gan_trainer import GANTrainer
from .launch import launch
from .meta_arch import GANMetaArch, Phase, StepContext
from .schedules import LossWeight

__all__ = [
    "GANMetaArch",
    "Phase",
    "StepContext",
    "LossWeight",
    "GANTrainer",
    "add_gan_engine_config",
    "optimizer_node",
    "launch",
]
