"""The method-agnostic GAN engine: meta-arch interface, the config-free step, the config-driven trainer,
optimizers/schedules, launcher.  See ``docs/engine.md``.
"""
from .config import add_gan_engine_config, optimizer_node
from .gan_trainer import GANTrainer
from .launch import launch
from .meta_arch import GANMetaArch, Phase, StepContext, TrainingStage
from .schedules import LossWeight, loss_weights_from_config
from .train_loop import SimpleGANTrainer

__all__ = [
    "GANMetaArch",
    "Phase",
    "StepContext",
    "TrainingStage",
    "LossWeight",
    "loss_weights_from_config",
    "SimpleGANTrainer",
    "GANTrainer",
    "add_gan_engine_config",
    "optimizer_node",
    "launch",
]
