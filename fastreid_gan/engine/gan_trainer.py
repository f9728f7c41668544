"""``GANTrainer``: the iteration-based, method-agnostic training loop for :class:`GANMetaArch` models.

One iteration::

    batch = next(loader)                       # moved to the model's device
    state = model.forward_train(batch, ctx)     # once; trainable params of active phases' networks require grad
    for phase in model.phases() active now:    # e.g. "dis" then "gen"
        requires_grad = True only for the phase networks' trainable parameters
        zero the phase networks' grads
        losses = model.phase_losses(phase.name, batch, state, ctx)     # unweighted "loss_*" scalars
        total = sum(ctx.weight(k) * v for k, v in losses if ctx.weight(k) != 0)  # NaN/inf -> FloatingPointError
        scaler.scale(total).backward()          # one GradScaler per phase (fp16 only)
        all-reduce the phase networks' grads    # distributed only
        clip (per optimizer GRAD_CLIP), step the phase's optimizers, scaler.update()
    step every LR scheduler; broadcast sub-network buffers (distributed); log losses and LRs

See ``docs/engine.md`` for the contract with method authors.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from fastreid.engine import hooks as fastreid_hooks
from fastreid.engine.defaults import DefaultTrainer
from fastreid.engine.train_loop import HookBase, TrainerBase
from fastreid.evaluation import inference_on_dataset, print_csv_format
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY, build_model
from fastreid.utils import comm
from fastreid.utils.checkpoint import Checkpointer
from fastreid.utils.events import CommonMetricPrinter, EventStorage, JSONWriter, TensorboardXWriter
from fastreid.utils.logger import setup_logger

from fastreid_gan.data.build import build_test_loader, build_gan_train_loader

from . import distributed
from .checkpoint import GANCheckpointer, get_rng_state, set_rng_state
from .hooks import GANEvalHook, GANPeriodicCheckpointer, GANPeriodicWriter, ImageGridHook
from .meta_arch import GANMetaArch, Phase, StepContext
from .optim import build_optimizer, complete_optimizer_node
from .schedules import IterationLRScheduler, LossWeight, build_lr_scheduler

__all__ = ["GANTrainer"]

logger = logging.getLogger(__name__)


def _evaluator_class() -> type:
    """The project's ReidEvaluator (faiss, no runtime compile); fastreid's only when ours is absent."""
    try:
        from fastreid_gan.evaluation import ReidEvaluator
    except ImportError:
        from fastreid.evaluation import ReidEvaluator
    return ReidEvaluator


def _to_device(batch: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v for k, v in batch.items()}


class GANTrainer(TrainerBase):
    """Trains a :class:`GANMetaArch` from a config: ``GANTrainer(cfg)``, ``resume_or_load()``, ``train()``.

    Attributes (besides fastreid's ``iter``, ``start_iter``, ``max_iter``, ``storage``):
        model, data_loader, optimizers ``{net: Optimizer}``, schedulers ``{net: IterationLRScheduler}``,
        scalers ``{phase: GradScaler}``, phase_list, loss_weights, last_batch, final_results.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)  # fastreid's auto-scaling rewrites config.yaml there
        for name in ("fastreid", "fastreid_gan"):
            if not logging.getLogger(name).isEnabledFor(logging.INFO):
                # a run without default_setup (tests, notebooks) still logs to the console and log.txt
                setup_logger(cfg.OUTPUT_DIR or None, distributed_rank=comm.get_rank(), name=name)
        data_loader = self.build_train_loader(cfg)
        cfg = DefaultTrainer.auto_scale_hyperparams(cfg, data_loader.dataset.num_classes)
        model = self.build_model(cfg)
        self.cfg = cfg
        self.model = model
        self.data_loader = data_loader
        self.sub_nets: Dict[str, nn.Module] = self._check_sub_networks(model)
        self.phase_list: Tuple[Phase, ...] = self._check_phases(model, self.sub_nets)
        self.loss_weights: Dict[str, LossWeight] = {
            name: LossWeight.from_spec(w) for name, w in dict(model.loss_weights()).items()
        }
        # requires_grad as the model built it: parameters it froze itself are never trained
        self._trainable: Dict[str, List[nn.Parameter]] = {
            net: [p for p in module.parameters() if p.requires_grad] for net, module in self.sub_nets.items()
        }
        self.max_iter = int(cfg.SOLVER.GAN.MAX_ITER)
        self.optimizers = self.build_optimizers(cfg, self.sub_nets)
        self.schedulers: Dict[str, IterationLRScheduler] = {
            net: build_lr_scheduler(opt, self._optimizer_node(cfg, net), self.max_iter)
            for net, opt in self.optimizers.items()
        }
        self._grad_clip: Dict[str, float] = {
            net: float(complete_optimizer_node(self._optimizer_node(cfg, net))["GRAD_CLIP"])
            for net in self.optimizers
        }
        self.amp_dtype = self._amp_dtype(cfg, model)
        fp16 = self.amp_dtype == torch.float16
        # one scaler per phase: a phase backpropagates one loss into several optimizers, and the scale must
        # follow that loss's overflow history (torch's multi-optimizer recipe: one scaler, one update per loss)
        self.scalers: Dict[str, torch.amp.GradScaler] = {
            phase.name: torch.amp.GradScaler("cuda", enabled=fp16) for phase in self.phase_list
        }
        self.checkpointer = GANCheckpointer(cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process())
        self.start_iter = 0
        self.iter = 0
        self.epoch = 0
        self.last_batch: Optional[Dict[str, Any]] = None
        self.final_results: Optional[Mapping] = None
        self._data_iter = None
        self._images_per_pass = max(len(data_loader.dataset), 1)
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ building blocks (overridable)
    @classmethod
    def build_train_loader(cls, cfg: Any) -> torch.utils.data.DataLoader:
        """The meta-arch class's ``build_train_loader(cfg)`` (default: ``build_gan_train_loader(cfg)``)."""
        meta_arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
        if isinstance(meta_arch, type) and issubclass(meta_arch, GANMetaArch):
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

    @staticmethod
    def _optimizer_node(cfg: Any, net: str) -> Any:
        key = net.upper()
        nodes = cfg.SOLVER.GAN.OPTIMIZERS
        if key not in nodes:
            raise KeyError(
                f"Sub-network {net!r} has no optimizer: add cfg.SOLVER.GAN.OPTIMIZERS.{key} = optimizer_node(...) "
                f"(fastreid_gan.engine.optimizer_node) to the method's config"
            )
        return nodes[key]

    @classmethod
    def build_optimizers(cls, cfg: Any, sub_nets: Mapping[str, nn.Module]) -> Dict[str, torch.optim.Optimizer]:
        """One optimizer per sub-network from ``cfg.SOLVER.GAN.OPTIMIZERS.<NET>`` (a missing node is an error)."""
        optimizers = {}
        for net, module in sub_nets.items():
            node = cls._optimizer_node(cfg, net)
            if not any(p.requires_grad for p in module.parameters()):
                logger.info("Sub-network %r has no trainable parameter: no optimizer", net)
                continue
            optimizers[net] = build_optimizer(node, module, key=f"SOLVER.GAN.OPTIMIZERS.{net.upper()}")
        return optimizers

    @staticmethod
    def _amp_dtype(cfg: Any, model: nn.Module) -> Optional[torch.dtype]:
        if not cfg.SOLVER.AMP.ENABLED:
            return None
        if model.device.type != "cuda":
            logger.info("SOLVER.AMP.ENABLED is ignored on %s: mixed precision is CUDA-only, training in fp32",
                        model.device)
            return None
        dtype = str(cfg.SOLVER.AMP.get("DTYPE", "fp16")).lower()
        if dtype not in ("fp16", "bf16"):
            raise ValueError(f"SOLVER.AMP.DTYPE must be 'fp16' or 'bf16', got {dtype!r}")
        logger.info("Mixed precision: %s autocast%s", dtype,
                    " with one GradScaler per phase" if dtype == "fp16" else "")
        return torch.float16 if dtype == "fp16" else torch.bfloat16

    @staticmethod
    def _check_sub_networks(model: GANMetaArch) -> Dict[str, nn.Module]:
        sub_nets = dict(model.sub_networks())
        if not sub_nets:
            raise ValueError(f"{type(model).__name__}.sub_networks() is empty")
        own_modules = {id(m) for m in model.modules()}
        owner: Dict[int, str] = {}
        for net, module in sub_nets.items():
            if not isinstance(module, nn.Module):
                raise TypeError(f"sub_networks()[{net!r}] is a {type(module).__name__}, not an nn.Module")
            if id(module) not in own_modules:
                # otherwise the checkpoint's "model" entry would miss it
                raise ValueError(f"sub_networks()[{net!r}] is not a submodule of {type(model).__name__}")
            for param in module.parameters():
                if id(param) in owner:
                    raise ValueError(f"Sub-networks {owner[id(param)]!r} and {net!r} share parameters")
                owner[id(param)] = net
        return sub_nets

    @staticmethod
    def _check_phases(model: GANMetaArch, sub_nets: Mapping[str, nn.Module]) -> Tuple[Phase, ...]:
        phases = tuple(model.phases())
        if not phases:
            raise ValueError(f"{type(model).__name__}.phases() is empty")
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ValueError(f"Phase names must be unique, got {names}")
        for phase in phases:
            if not isinstance(phase, Phase):
                raise TypeError(f"phases() must return Phase objects, got {phase!r}")
            missing = [n for n in phase.networks if n not in sub_nets]
            if missing:
                raise ValueError(f"Phase {phase.name!r} names unknown sub-network(s) {missing}; "
                                 f"sub_networks() has {sorted(sub_nets)}")
        untrained = [n for n in sub_nets if not any(n in p.networks for p in phases)]
        if untrained:
            logger.info("Sub-network(s) %s are in no phase: they stay frozen", untrained)
        return phases

    def build_hooks(self) -> List[HookBase]:
        """Timer, image grids, checkpoints, evaluation (+ metrics.json), writers — override to change."""
        gan = self.cfg.SOLVER.GAN
        hooks: List[HookBase] = [fastreid_hooks.IterationTimer()]
        if gan.VIS_PERIOD > 0 and comm.is_main_process():
            hooks.append(ImageGridHook(gan.VIS_PERIOD, self.cfg.OUTPUT_DIR, gan.get("VIS_SAMPLES", 8)))
        # checkpoint before evaluating: a crashing evaluation still leaves the weights on disk
        hooks.append(GANPeriodicCheckpointer(gan.CHECKPOINT_PERIOD))

        def test_and_save_results() -> Mapping:
            self._last_eval_results = self.test(self.cfg, self.model)
            return self._last_eval_results

        hooks.append(GANEvalHook(gan.EVAL_PERIOD, test_and_save_results, self.cfg.OUTPUT_DIR))
        if gan.LOG_PERIOD > 0 and comm.is_main_process():
            hooks.append(GANPeriodicWriter(self.build_writers(), gan.LOG_PERIOD))
        return hooks

    def build_writers(self) -> list:
        """Console/log.txt (timer + ETA), ``events.json`` (every logged scalar) and tensorboard."""
        return [
            CommonMetricPrinter(self.max_iter),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "events.json")),
            TensorboardXWriter(self.cfg.OUTPUT_DIR),
        ]

    # ------------------------------------------------------------------ evaluation
    @classmethod
    def build_evaluator(cls, cfg: Any, dataset_name: str, output_dir: Optional[str] = None):
        """``(test loader, evaluator)`` for one test dataset."""
        data_loader, num_query = build_test_loader(cfg, dataset_name)
        return data_loader, _evaluator_class()(cfg, num_query, output_dir)

    @classmethod
    def test(cls, cfg: Any, model: nn.Module) -> "OrderedDict[str, Dict[str, float]]":
        """Evaluate ``model`` on every ``cfg.DATASETS.TESTS``: ``{dataset: {metric: value}}`` (main process;
        other ranks get empty dicts).  Unlike fastreid, a single dataset is not flattened."""
        results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
        for dataset_name in cfg.DATASETS.TESTS:
            logger.info("Evaluating on %s", dataset_name)
            data_loader, evaluator = cls.build_evaluator(cfg, dataset_name)
            result = inference_on_dataset(model, data_loader, evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
            results[dataset_name] = result
            if comm.is_main_process() and result:
                table = OrderedDict(result)
                table["dataset"] = dataset_name
                print_csv_format(table)
        return results

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, iteration: int) -> Dict[str, Any]:
        """Everything needed to resume after ``iteration`` (call on every rank: RNG states are gathered)."""
        rng = comm.all_gather(get_rng_state()) if distributed.is_distributed() else [get_rng_state()]
        sampler = self.data_loader.batch_sampler
        return {
            "model": self.model.state_dict(),
            "optimizers": {net: opt.state_dict() for net, opt in self.optimizers.items()},
            "schedulers": {net: sched.state_dict() for net, sched in self.schedulers.items()},
            "scalers": {phase: scaler.state_dict() for phase, scaler in self.scalers.items()},
            "iteration": int(iteration),
            "data": {"seed": int(sampler.seed), "start_batch": int(iteration) + 1},
            "rng": rng,
        }

    def save_checkpoint(self, name: str, iteration: Optional[int] = None) -> Optional[str]:
        """Save ``<OUTPUT_DIR>/<name>.pth`` (collective: call on every rank)."""
        state = self.checkpoint_state(self.iter if iteration is None else iteration)
        return self.checkpointer.save(name, state)

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from ``<OUTPUT_DIR>/last_checkpoint`` (everything, exactly) if ``resume`` and it exists;
        otherwise load ``MODEL.WEIGHTS`` into the model only (fastreid's lenient loader) and start at 0."""
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            logger.info("Resuming from %s", path)
            self.load_training_state(self.checkpointer.load(path))
        else:
            Checkpointer(self.model).load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
            self.start_iter = 0

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`checkpoint_state` dict; training continues at ``state["iteration"] + 1``."""
        self.model.load_state_dict(state["model"])
        for kind, objects in (("optimizers", self.optimizers), ("schedulers", self.schedulers),
                              ("scalers", self.scalers)):
            saved = state[kind]
            for name, obj in objects.items():
                if name not in saved:
                    raise KeyError(f"The checkpoint has no {kind}[{name!r}] (saved: {sorted(saved)})")
                obj.load_state_dict(saved[name])
        self.data_loader.batch_sampler.load_state_dict(state["data"])
        rng = state.get("rng") or []
        rank = comm.get_rank()
        if rank < len(rng):
            set_rng_state(rng[rank])
        else:
            logger.warning("The checkpoint has no RNG state for rank %d: the run will not be bit-exact", rank)
        self.start_iter = int(state["iteration"]) + 1

    # ------------------------------------------------------------------ training loop
    def train(self) -> Optional[Mapping]:
        """Run iterations ``start_iter .. MAX_ITER - 1``; returns the final evaluation (main process)."""
        logger.info("Starting training from iteration %d", self.start_iter)
        self.iter = self.start_iter
        with EventStorage(self.start_iter) as self.storage:
            self.storage.epoch = 0
            try:
                self.before_train()
                for self.iter in range(self.start_iter, self.max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                self.iter = self.max_iter  # marks a finished run for the after_train hooks
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()
        return self.final_results

    def before_train(self) -> None:
        self.model.train()
        # replicas start identical (model init and loaded weights may differ per rank)
        distributed.broadcast_model(self.model)
        self.data_loader.batch_sampler.start_batch = self.start_iter
        self._data_iter = iter(self.data_loader)
        super().before_train()

    def before_step(self) -> None:
        images_seen = self.iter * self.data_loader.batch_sampler.batch_size * comm.get_world_size()
        self.epoch = images_seen // self._images_per_pass  # for fastreid's "epoch/iter" log line only
        self.storage.epoch = self.epoch
        super().before_step()

    def after_train(self) -> None:
        self._data_iter = None  # shuts down loader workers
        super().after_train()

    def _set_requires_grad(self, networks: Sequence[str]) -> None:
        """Only the trainable parameters of ``networks`` require grad."""
        for net, params in self._trainable.items():
            flag = net in networks
            for param in params:
                param.requires_grad_(flag)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def run_step(self) -> None:
        """One iteration: forward_train once, then every active phase (see the module docstring)."""
        if not self.model.training:
            raise RuntimeError("GANTrainer: the model was switched to eval mode during training")
        iteration = self.iter
        start = time.perf_counter()
        batch = next(self._data_iter)
        data_time = time.perf_counter() - start
        batch = _to_device(batch, self.model.device)
        self.last_batch = batch

        active = tuple(p for p in self.phase_list if p.is_active(iteration))
        ctx = StepContext(
            iteration=iteration,
            weights={name: w(iteration) for name, w in self.loss_weights.items()},
            device=self.model.device,
            active_phases=tuple(p.name for p in active),
            max_iter=self.max_iter,
        )
        metrics: Dict[str, float] = {}
        try:
            self._set_requires_grad({n for p in active for n in p.networks})
            with self._autocast():
                state = self.model.forward_train(batch, ctx)
            for phase in active:
                metrics.update(self._run_phase(phase, batch, state, ctx))
            del state  # frees the iteration's graph before the hooks run
        finally:
            self._set_requires_grad(tuple(self._trainable))
        for scheduler in self.schedulers.values():
            scheduler.step()
        # BN running statistics follow rank 0, as DDP(broadcast_buffers=True) does
        distributed.broadcast_buffers(self.sub_nets.values())
        self._write_metrics(metrics, data_time, ctx)

    def _run_phase(self, phase: Phase, batch: Dict[str, Any], state: Dict[str, Any],
                   ctx: StepContext) -> Dict[str, float]:
        self._set_requires_grad(phase.networks)
        optimizers = [self.optimizers[n] for n in phase.networks if n in self.optimizers]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        with self._autocast():
            losses = self.model.phase_losses(phase.name, batch, state, ctx)
        terms = self._weighted_terms(phase, losses, ctx)
        if not terms:
            return {}  # every term has weight 0 now: nothing to step (Adam would still move on zero grads)
        names = list(terms)
        values = distributed.all_reduce_mean(torch.stack([v.detach().float() for v, _ in terms.values()]))
        values_list = values.tolist()
        for name, value in zip(names, values_list):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"Loss {name!r} of phase {phase.name!r} is {value} at iteration {ctx.iteration}"
                )
        total = sum(w * v.float() for v, w in terms.values())
        if not total.requires_grad:
            raise RuntimeError(
                f"Phase {phase.name!r}: losses {names} do not depend on any parameter of {list(phase.networks)}"
            )
        scaler = self.scalers[phase.name]
        scaler.scale(total).backward()
        params = [p for n in phase.networks for p in self._trainable[n]]
        distributed.all_reduce_gradients(params)
        # a network none of this phase's losses reached has no grads: stepping it would be a no-op in fp32
        # and an error for a GradScaler ("no inf checks were recorded"); grads agree across ranks here
        stepped = [n for n in phase.networks
                   if n in self.optimizers and any(p.grad is not None for p in self._trainable[n])]
        for net in stepped:
            clip = self._grad_clip.get(net, 0.0)
            if clip > 0:
                scaler.unscale_(self.optimizers[net])
                torch.nn.utils.clip_grad_norm_(self._trainable[net], clip)
        for net in stepped:
            scaler.step(self.optimizers[net])
        if stepped:
            scaler.update()
        weighted_total = sum(w * v for (_, w), v in zip(terms.values(), values_list))
        out = {f"{phase.name}/{name}": value for name, value in zip(names, values_list)}
        out[f"{phase.name}/total_loss"] = weighted_total
        return out

    @staticmethod
    def _weighted_terms(phase: Phase, losses: Mapping[str, Tensor],
                        ctx: StepContext) -> "OrderedDict[str, Tuple[Tensor, float]]":
        if not isinstance(losses, Mapping):
            raise TypeError(f"phase_losses({phase.name!r}) must return a dict of losses, got {type(losses).__name__}")
        terms: "OrderedDict[str, Tuple[Tensor, float]]" = OrderedDict()
        for name, value in losses.items():
            if not name.startswith("loss_"):
                raise ValueError(f"phase_losses({phase.name!r}) returned {name!r}: loss names start with 'loss_'")
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise TypeError(f"phase_losses({phase.name!r})[{name!r}] must be a scalar tensor")
            weight = ctx.weight(name)
            if weight != 0:
                terms[name] = (value.reshape(()), weight)
        return terms

    def _write_metrics(self, metrics: Dict[str, float], data_time: float, ctx: StepContext) -> None:
        storage = self.storage
        storage.put_scalar("data_time", data_time)
        if metrics:
            storage.put_scalars(**metrics)
        first = True
        for net, opt in self.optimizers.items():
            lr = opt.param_groups[0]["lr"]
            storage.put_scalar(f"lr_{net}", lr, smoothing_hint=False)
            if first:  # CommonMetricPrinter shows "lr": the first sub-network's
                storage.put_scalar("lr", lr, smoothing_hint=False)
                first = False
        for name, weight in self.loss_weights.items():
            if not weight.is_constant:
                storage.put_scalar(f"weight_{name[len('loss_'):]}", ctx.weight(name), smoothing_hint=False)
