"""The interface a GAN method implements to be trained by :class:`~fastreid_gan.engine.GANTrainer`.

A method is one ``nn.Module`` (registered in fastreid's ``META_ARCH_REGISTRY``) that owns several
sub-networks, each with its own optimizer.  The engine runs, every iteration, one shared
``forward_train`` and then the method's phases in order (e.g. "dis" then "gen"); each phase returns
unweighted losses that the engine weights, backpropagates once and turns into optimizer steps of the
phase's networks only.  See ``docs/engine.md`` for worked examples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Sequence, Tuple

import torch
from torch import Tensor, nn

from .schedules import LossWeight

__all__ = ["Phase", "StepContext", "TrainingStage", "GANMetaArch"]


@dataclass(frozen=True)
class Phase:
    """One optimisation step inside an iteration.

    Attributes:
        name: passed to :meth:`GANMetaArch.phase_losses`; also the logging prefix ("dis/loss_gan").
        networks: keys of :meth:`GANMetaArch.sub_networks` updated by this phase.  Only their trainable
            parameters have ``requires_grad=True`` while the phase's losses are computed, their grads are
            zeroed before and their optimizers step after the phase's single backward.
        every: run on every ``every``-th iteration counted from ``start_iter`` (SPGAN: ``every=2``).
        start_iter: first iteration on which the phase runs (a network that starts training late).
    """

    name: str
    networks: Tuple[str, ...]
    every: int = 1
    start_iter: int = 0

    def __post_init__(self) -> None:
        # a bare string would silently become a tuple of characters
        if isinstance(self.networks, str):
            raise TypeError(
                f"Phase {self.name!r}: networks must be a tuple of names, got the string {self.networks!r}"
            )
        object.__setattr__(self, "networks", tuple(self.networks))
        if not self.networks:
            raise ValueError(f"Phase {self.name!r} updates no network")
        if len(set(self.networks)) != len(self.networks):
            raise ValueError(f"Phase {self.name!r} lists a network twice: {self.networks}")
        if self.every < 1:
            raise ValueError(f"Phase {self.name!r}: every must be >= 1, got {self.every}")
        if self.start_iter < 0:
            raise ValueError(f"Phase {self.name!r}: start_iter must be >= 0, got {self.start_iter}")

    def is_active(self, iteration: int) -> bool:
        """Whether the phase runs at ``iteration`` (0-based)."""
        return iteration >= self.start_iter and (iteration - self.start_iter) % self.every == 0


@dataclass(frozen=True)
class TrainingStage:
    """One training run of a method trained in several runs (FD-GAN's stages I-III), run in order by
    ``tools/train_net.py`` (:mod:`fastreid_gan.training_stages`).

    Attributes:
        name: the stage's folder under ``OUTPUT_DIR`` ("stage1").
        config_file: YAML merged over the ``--config-file`` before the command-line overrides.
        overrides: ``KEY VALUE`` pairs applied after ``config_file`` and before the command line.
        from_previous: start from the previous stage's ``model_final.pth`` (``MODEL.WEIGHTS``).
    """

    name: str
    config_file: str
    overrides: Tuple[str, ...] = ()
    from_previous: bool = True


@dataclass
class StepContext:
    """What the engine tells the model about the current iteration.

    Attributes:
        iteration: 0-based index of the iteration being run.
        weights: every loss weight declared by :meth:`GANMetaArch.loss_weights`, evaluated at ``iteration``.
        device: the model's device (batches are already moved there).
        active_phases: names of the phases that run this iteration, in order; ``forward_train`` may skip
            work that only an inactive phase needs.
        max_iter: ``SOLVER.GAN.MAX_ITER``.
    """

    iteration: int
    weights: Dict[str, float]
    device: torch.device
    active_phases: Tuple[str, ...] = ()
    max_iter: int = 0

    def weight(self, loss_name: str) -> float:
        """The weight of ``loss_name`` at this iteration; 1.0 for a loss with no declared weight."""
        return float(self.weights.get(loss_name, 1.0))

    def is_active(self, phase: str) -> bool:
        """Whether phase ``phase`` runs this iteration."""
        return phase in self.active_phases


class GANMetaArch(nn.Module):
    """Base class of every GAN meta-architecture (register subclasses with ``@META_ARCH_REGISTRY.register()``).

    Rules the engine relies on:

    * every sub-network is a submodule of the meta-arch, so ``state_dict()`` holds all of them and one
      checkpoint file restores the whole method;
    * ``forward_train``/``phase_losses`` pass intermediate tensors through the returned ``state`` dict and
      never store them on ``self`` (no module state is mutated in a forward besides BN statistics);
    * randomness comes from torch/numpy/python global RNGs, which the engine saves and restores.
    """

    @classmethod
    def build_train_loader(cls, cfg: Any) -> torch.utils.data.DataLoader:
        """The training loader (called before the model is built).  Override to add per-sample fields
        with ``build_gan_train_loader(cfg, sample_hook=...)`` (FD-GAN's pose maps, SPGAN's target-domain
        images); the loader must keep ``build_gan_train_loader``'s seeded, resumable ``batch_sampler``."""
        from fastreid_gan.data.build import build_gan_train_loader

        return build_gan_train_loader(cfg)

    @classmethod
    def training_stages(cls, cfg: Any) -> Sequence[TrainingStage]:
        """The runs a config trains in order (``tools/train_net.py`` runs them, each in ``OUTPUT_DIR/<name>``);
        default none: the config itself is one run."""
        return ()

    @classmethod
    def default_optimizers(cls) -> Dict[str, Any]:
        """The method's optimizer defaults: ``{sub-network name: optimizer_node(...)}`` (the published recipe).

        A config's ``SOLVER.GAN.OPTIMIZERS.<NET>`` keys override them and :func:`~fastreid_gan.engine.optimizer_node`
        fills what neither gives; they never reach a config of another method.  Default: none (every
        sub-network then needs its node in the config).
        """
        return {}

    def sub_networks(self) -> Dict[str, nn.Module]:
        """Every network with its own optimizer, e.g. ``{"gen": ..., "dis": ..., "id": ...}``.

        The optimizer of ``"gen"`` is configured by ``cfg.SOLVER.GAN.OPTIMIZERS.GEN`` over
        ``default_optimizers()["gen"]``.
        """
        raise NotImplementedError

    def phases(self) -> Sequence[Phase]:
        """The phases in execution order within one iteration (read once, when the trainer is built)."""
        raise NotImplementedError

    def loss_weights(self) -> Dict[str, LossWeight]:
        """``"loss_x" -> LossWeight`` schedules (read once); a loss without an entry has weight 1."""
        return {}

    def identity_classifier_prefixes(self) -> Sequence[str]:
        """State-dict key prefixes of the identity classifier(s), whose size follows the number of training
        identities: a checkpoint may hold them at another size (or not at all) when it initialises a model or
        serves for retrieval (:func:`fastreid_gan.checkpoint_io.check_weights_fit`); default none."""
        return ()

    def prepare_training(self) -> None:
        """Build what training needs and inference does not (DG-Net: its frozen teacher); default nothing.

        The trainer calls it once, right after building the model and before a checkpoint is loaded, so whatever
        it draws from the RNGs (a random initialisation before weights are loaded) is drawn before a resumed run
        restores them: nothing built lazily during training may consume the training RNGs.
        """

    def start_from_weights(self, weights: str) -> None:
        """Called once when a run starts without resuming, right after ``MODEL.WEIGHTS`` (``weights``, maybe empty)
        was loaded: derive what the loaded weights determine (FD-GAN's stage 2 copies E into D_id) or refuse a
        start without the weights the run needs; default nothing.  A resumed run does not call it (its checkpoint
        holds the result)."""

    def training_state_dict(self) -> Dict[str, Any]:
        """Training state that is neither a parameter nor a buffer and that a resumed run needs (SPGAN's image
        pools); default ``{}``: none.

        Tensors, numbers, strings, lists and dicts only (``torch.load(weights_only=True)``).  A non-empty dict is
        saved in the training checkpoint as ``"method_state"`` (one entry per rank), beside the optimizers and
        not in ``"model"``: weights-only loaders (``MODEL.WEIGHTS``, fastreid's ``Checkpointer``, converted
        checkpoints) never see it, and ``--resume`` gives it back through :meth:`load_training_state_dict`
        (``docs/engine.md`` §7).  The keys must not depend on the training progress (an empty pool is still an
        entry), so every rank agrees on whether there is state to gather.
        """
        return {}

    def load_training_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`training_state_dict` returned (on resume only, after the weights are loaded)."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} has training state to restore but does not implement "
                                      f"load_training_state_dict")

    def forward_train(self, batch: Dict[str, Any], ctx: StepContext) -> Dict[str, Any]:
        """The shared forward run once per iteration before the phases; returns a state dict for them."""
        raise NotImplementedError

    def phase_losses(
        self, phase: str, batch: Dict[str, Any], state: Dict[str, Any], ctx: StepContext
    ) -> Mapping[str, Tensor]:
        """UNWEIGHTED scalar losses named ``"loss_*"`` of ``phase``.

        The engine multiplies each by ``ctx.weight(name)`` and drops weight-0 terms (so a model may skip
        computing a term whose weight is 0).
        """
        raise NotImplementedError

    def forward(self, batched_inputs: Any) -> Tensor:
        """Inference: a dict with ``"images"`` or a raw ``(B, 3, H, W)`` tensor in 0..255 -> ``(B, D)`` features."""
        raise NotImplementedError

    def inference_images(self, batched_inputs: Any) -> Tensor:
        """The ``(B, 3, H, W)`` 0..255 images of what :meth:`forward` gets (a dict with ``"images"``, as fastreid's
        test loader gives, or the tensor itself, as ``DefaultPredictor`` and export give), on the model's device."""
        if isinstance(batched_inputs, Mapping):
            images = batched_inputs["images"]
        elif isinstance(batched_inputs, Tensor):
            images = batched_inputs
        else:
            raise TypeError(f"{type(self).__name__} expects a dict with 'images' or a tensor, got "
                            f"{type(batched_inputs).__name__}")
        return images.to(self.device)

    def visualize(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """Optional: ``name -> (N, 3, H, W)`` images in 0..1 for the image-grid hook (run under no_grad, eval mode)."""
        return {}

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")
