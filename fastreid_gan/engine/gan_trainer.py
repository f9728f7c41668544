"""``GANTrainer``: builds everything a :class:`GANMetaArch` training run needs from a config, on top of the
config-free step of :class:`~fastreid_gan.engine.train_loop.SimpleGANTrainer`.

It owns the building (loader, model, optimizers from ``SOLVER.GAN.OPTIMIZERS``, schedules, mixed precision),
the hooks (image grids, checkpoints, evaluation, writers) and resuming.  ``docs/engine.md`` describes the
loop and the contract with method authors.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from fastreid.engine import hooks as fastreid_hooks
from fastreid.engine.defaults import DefaultTrainer
from fastreid.engine.train_loop import HookBase
from fastreid.modeling.meta_arch import build_model
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger

from fastreid_gan.checkpoint_io import CheckpointFileError, check_weights_fit
from fastreid_gan.checkpointer import RESUME_ADVICE, RunCheckpointer
from fastreid_gan.data.build import build_gan_train_loader
from fastreid_gan.evaluation import build_evaluator, evaluate_on_test_datasets
from fastreid_gan.run_outputs import build_event_writers, mark_config_yaml

from . import distributed
from .checkpoint import StateDicts, get_rng_state, set_rng_state
from .config import gan_meta_arch_class, resolve_optimizer_node
from .hooks import GANEvalHook, GANPeriodicCheckpointer, GANPeriodicWriter, ImageGridHook
from .meta_arch import GANMetaArch
from .optim import build_optimizer
from .schedules import build_lr_scheduler
from .train_loop import SimpleGANTrainer

__all__ = ["GANTrainer", "resolve_optimizer_nodes"]

logger = logging.getLogger(__name__)


def resolve_optimizer_nodes(cfg: Any, model: GANMetaArch, sub_networks: Mapping[str, nn.Module]) -> Dict[str, Any]:
    """The complete optimizer node of every sub-network: the config's ``SOLVER.GAN.OPTIMIZERS.<NET>`` over the
    method's ``default_optimizers()`` over :func:`~fastreid_gan.engine.optimizer_node` (``docs/engine.md`` §3).

    Raises:
        KeyError: a sub-network with neither a config node nor a method default (naming the key).
        ValueError: a config node that names no sub-network (a typo would otherwise be ignored).
    """
    given = cfg.SOLVER.GAN.OPTIMIZERS
    defaults = {net.upper(): node for net, node in type(model).default_optimizers().items()}
    stray = sorted(set(given) - {net.upper() for net in sub_networks})
    if stray:
        raise ValueError(
            f"SOLVER.GAN.OPTIMIZERS has node(s) {stray} but {type(model).__name__} has no such sub-network; "
            f"its sub-networks are {sorted(sub_networks)} (nodes {sorted(n.upper() for n in sub_networks)})"
        )
    return {
        net: resolve_optimizer_node(given.get(net.upper()), defaults.get(net.upper()),
                                    f"SOLVER.GAN.OPTIMIZERS.{net.upper()}")
        for net in sub_networks
    }


class GANTrainer(SimpleGANTrainer):
    """Trains a :class:`GANMetaArch` from a config: ``GANTrainer(cfg)``, ``resume_or_load()``, ``train()``.

    Attributes (besides :class:`SimpleGANTrainer`'s): ``cfg``, ``optimizer_nodes`` ``{net: complete node}``,
    ``checkpointer``, ``final_results`` (the final evaluation, main process).
    """

    def __init__(self, cfg: Any) -> None:
        if int(cfg.SOLVER.GAN.MAX_ITER) < 1:
            raise ValueError(f"SOLVER.GAN.MAX_ITER is {cfg.SOLVER.GAN.MAX_ITER}: a training run needs at least one "
                             f"iteration (to evaluate a checkpoint, use --eval-only MODEL.WEIGHTS <file>)")
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)  # fastreid's auto-scaling rewrites config.yaml there
        for name in ("fastreid", "fastreid_gan"):
            if not logging.getLogger(name).isEnabledFor(logging.INFO):
                # a run without default_setup (tests, notebooks) still logs to the console and log.txt
                setup_logger(cfg.OUTPUT_DIR or None, distributed_rank=comm.get_rank(), name=name)
        data_loader = self.build_train_loader(cfg)
        cfg = DefaultTrainer.auto_scale_hyperparams(cfg, data_loader.dataset.num_classes)
        if comm.is_main_process():
            mark_config_yaml(cfg.OUTPUT_DIR)  # auto-scaling rewrote it
        model = self.build_model(cfg)
        sub_nets = model.sub_networks()
        self.optimizer_nodes: Dict[str, Any] = resolve_optimizer_nodes(cfg, model, sub_nets)
        max_iter = int(cfg.SOLVER.GAN.MAX_ITER)
        optimizers = self.build_optimizers(self.optimizer_nodes, sub_nets)
        super().__init__(
            model,
            data_loader,
            optimizers,
            schedulers={net: build_lr_scheduler(opt, self.optimizer_nodes[net], max_iter)
                        for net, opt in optimizers.items()},
            amp_dtype=self._amp_dtype(cfg, model),
            grad_clip={net: node.GRAD_CLIP for net, node in self.optimizer_nodes.items()},
        )
        self.cfg = cfg
        self.max_iter = max_iter
        self.epoch = 0
        self.final_results: Optional[Mapping] = None
        # a sampler may draw several samples per image and pass (FD-GAN: 4 pairs per anchor)
        self._images_per_pass = max(getattr(data_loader.batch_sampler, "samples_per_pass", len(data_loader.dataset)), 1)
        self.checkpointer = RunCheckpointer(
            model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(),
            meta_architecture=cfg.MODEL.META_ARCHITECTURE, keep=cfg.SOLVER.CHECKPOINT_KEEP,
            keep_init=cfg.MODEL.WEIGHTS_KEEP_INIT,
            optimizers=StateDicts("optimizers", self.optimizers),
            schedulers=StateDicts("schedulers", self.schedulers),
            scalers=StateDicts("scalers", self.scalers),
        )
        self.checkpointer.remove_stale_partial_saves()
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ building blocks (overridable)
    @classmethod
    def build_train_loader(cls, cfg: Any) -> torch.utils.data.DataLoader:
        """The meta-arch class's ``build_train_loader(cfg)`` (default: ``build_gan_train_loader(cfg)``)."""
        meta_arch = gan_meta_arch_class(cfg.MODEL.META_ARCHITECTURE)
        if meta_arch is not None:
            return meta_arch.build_train_loader(cfg)
        return build_gan_train_loader(cfg)  # build_model raises the TypeError for a non-GAN meta-arch

    @classmethod
    def build_model(cls, cfg: Any) -> GANMetaArch:
        """``fastreid.modeling.build_model(cfg)``; it must be a :class:`GANMetaArch`."""
        model = build_model(cfg)
        if not isinstance(model, GANMetaArch):
            raise TypeError(
                f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} builds a {type(model).__name__}, "
                f"not a GANMetaArch: train it with fastreid's DefaultTrainer instead of GANTrainer"
            )
        logger.info("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizers(cls, nodes: Mapping[str, Any],
                         sub_nets: Mapping[str, nn.Module]) -> Dict[str, torch.optim.Optimizer]:
        """One optimizer per sub-network with trainable parameters, from its complete node."""
        optimizers = {}
        for net, module in sub_nets.items():
            if not any(p.requires_grad for p in module.parameters()):
                logger.info("Sub-network %r has no trainable parameter: no optimizer", net)
                continue
            optimizers[net] = build_optimizer(nodes[net], module, key=f"SOLVER.GAN.OPTIMIZERS.{net.upper()}")
        return optimizers

    @staticmethod
    def _amp_dtype(cfg: Any, model: nn.Module) -> Optional[torch.dtype]:
        if not cfg.SOLVER.AMP.ENABLED:
            return None
        if model.device.type != "cuda":
            logger.info("SOLVER.AMP.ENABLED is ignored on %s: mixed precision is CUDA-only, training in fp32",
                        model.device)
            return None
        dtype = str(cfg.SOLVER.AMP.DTYPE).lower()
        if dtype not in ("fp16", "bf16"):
            raise ValueError(f"SOLVER.AMP.DTYPE must be 'fp16' or 'bf16', got {dtype!r}")
        logger.info("Mixed precision: %s autocast%s", dtype,
                    " with one GradScaler per phase" if dtype == "fp16" else "")
        return torch.float16 if dtype == "fp16" else torch.bfloat16

    def build_hooks(self) -> List[HookBase]:
        """Timer, image grids, checkpoints, evaluation (+ metrics.json), writers — override to change."""
        gan = self.cfg.SOLVER.GAN
        hooks: List[HookBase] = [fastreid_hooks.IterationTimer()]
        if gan.VIS_PERIOD > 0 and comm.is_main_process():
            hooks.append(ImageGridHook(gan.VIS_PERIOD, self.cfg.OUTPUT_DIR, gan.VIS_SAMPLES))
        # checkpoint before evaluating: a crashing evaluation still leaves the weights on disk
        hooks.append(GANPeriodicCheckpointer(gan.CHECKPOINT_PERIOD))
        hooks.append(GANEvalHook(gan.EVAL_PERIOD, lambda: self.test(self.cfg, self.model), self.cfg.OUTPUT_DIR))
        if gan.LOG_PERIOD > 0 and comm.is_main_process():
            hooks.append(GANPeriodicWriter(self.build_writers(), gan.LOG_PERIOD))
        return hooks

    def build_writers(self) -> list:
        """Console/log.txt (timer + ETA), ``events.json`` (every logged scalar) and tensorboard."""
        return build_event_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    # ------------------------------------------------------------------ evaluation
    @classmethod
    def build_evaluator(cls, cfg: Any, dataset_name: str, output_dir: Optional[str] = None):
        """``(test loader, evaluator)`` for one test dataset; override for another evaluator."""
        return build_evaluator(cfg, dataset_name, output_dir)

    @classmethod
    def test(cls, cfg: Any, model: nn.Module) -> "OrderedDict[str, Dict[str, float]]":
        """Evaluate ``model`` on every ``cfg.DATASETS.TESTS``: ``{dataset: {metric: value}}`` (main process;
        other ranks get empty dicts).  Unlike fastreid, a single dataset is not flattened."""
        return evaluate_on_test_datasets(cfg, model, cls.build_evaluator)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, name: str, iteration: Optional[int] = None) -> Optional[str]:
        """Save ``<OUTPUT_DIR>/<name>.pth`` after ``iteration`` (collective: call on every rank, since the RNG
        states of all ranks are gathered; only the main process writes)."""
        iteration = self.iter if iteration is None else iteration
        rng = comm.all_gather(get_rng_state()) if distributed.is_distributed() else [get_rng_state()]
        sampler = self.data_loader.batch_sampler
        extra: Dict[str, Any] = {}
        method_state = self.model.training_state_dict()
        if method_state:  # an entry only for a method with such state (SPGAN's pools): docs/engine.md §7
            extra["method_state"] = comm.all_gather(method_state) if distributed.is_distributed() else [method_state]
        return self.checkpointer.save(
            name,
            iteration=int(iteration),
            data={"seed": int(sampler.seed), "start_batch": int(iteration) + 1},
            rng=rng,
            **extra,
        )

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from ``<OUTPUT_DIR>/last_checkpoint`` (everything, exactly; the newest complete checkpoint if
        that one is unreadable) if ``resume`` and it exists; otherwise load ``MODEL.WEIGHTS`` into the model
        only (checked to fit, see :mod:`fastreid_gan.checkpoint_io`) and start at 0."""
        if resume and self.checkpointer.has_checkpoint():
            path, state = self.checkpointer.resumable()
            logger.info("Resuming from %s", path)
            self.load_training_state(state, path)
        else:
            self.checkpointer.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
            self.model.start_from_weights(self.cfg.MODEL.WEIGHTS)
            self.start_iter = 0

    def load_training_state(self, state: Mapping[str, Any], path: str = "the checkpoint") -> None:
        """Restore a checkpoint dict written by :meth:`save_checkpoint` (read from ``path``); training
        continues at ``state["iteration"] + 1``.

        Raises:
            WeightsMismatchError: the weights do not fit the model exactly (OUTPUT_DIR of another config?).
            CheckpointFileError: the file lacks training state (it was not written by this trainer).
        """
        check_weights_fit(self.model, state, path, source="the checkpoint to resume from",
                          meta_arch=self.cfg.MODEL.META_ARCHITECTURE, classifier_may_differ=False,
                          advice=RESUME_ADVICE)
        missing = [k for k in ("iteration", "data", "rng", *self.checkpointer.checkpointables) if k not in state]
        if missing:
            raise CheckpointFileError(
                f"{path} cannot be resumed from: it has no {missing} (not a checkpoint of a GAN training run). "
                f"To start from its weights, run without --resume with MODEL.WEIGHTS {path}"
            )
        self.model.load_state_dict(state["model"])
        for key, objects in self.checkpointer.checkpointables.items():
            objects.load_state_dict(state[key])
        self.data_loader.batch_sampler.load_state_dict(state["data"])
        rng, rank = state["rng"], comm.get_rank()
        if rank < len(rng):
            set_rng_state(rng[rank])
        else:
            logger.warning("The checkpoint has no RNG state for rank %d: the run will not be bit-exact", rank)
        if self.model.training_state_dict():  # the method's state outside parameters (SPGAN's image pools)
            method_state = state.get("method_state") or []
            if rank < len(method_state):
                self.model.load_training_state_dict(method_state[rank])
            else:
                logger.warning("%s has no method state (%s) for rank %d: it starts afresh and the run will not be "
                               "bit-exact", path, sorted(self.model.training_state_dict()), rank)
        self.start_iter = int(state["iteration"]) + 1

    # ------------------------------------------------------------------ training loop
    def train(self) -> Optional[Mapping]:  # type: ignore[override]
        """Run iterations ``start_iter .. SOLVER.GAN.MAX_ITER - 1``; returns the final evaluation (main process)."""
        super().train(self.start_iter, self.max_iter)
        return self.final_results

    def before_train(self) -> None:
        # the stream continues where the checkpoint left it (batch start_iter)
        self.data_loader.batch_sampler.start_batch = self.start_iter
        super().before_train()

    def before_step(self) -> None:
        images_seen = self.iter * self.data_loader.batch_sampler.batch_size * comm.get_world_size()
        self.epoch = images_seen // self._images_per_pass  # for fastreid's "epoch/iter" log line only
        self.storage.epoch = self.epoch
        super().before_step()
