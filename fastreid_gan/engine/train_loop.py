"""``SimpleGANTrainer``: the config-free training step of the GAN engine (``docs/engine.md`` §1).

It is given a built model, a data loader and one optimizer per sub-network, and knows nothing of configs,
checkpoints or evaluation: :class:`~fastreid_gan.engine.GANTrainer` builds those from a config on top of it,
as fastreid's ``DefaultTrainer`` builds on ``SimpleTrainer``.  One iteration (``run_step``) is the loop that
``docs/engine.md`` §1 describes: ``forward_train`` once, then every active phase with one backward, one
``GradScaler`` per phase, gradient averaging over ranks, per-network clipping and optimizer steps.
"""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from fastreid.engine.train_loop import TrainerBase
from fastreid.utils.events import EventStorage, get_event_storage

from . import distributed
from .meta_arch import GANMetaArch, Phase, StepContext
from .schedules import LossWeight

__all__ = ["SimpleGANTrainer"]

logger = logging.getLogger(__name__)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v for k, v in batch.items()}


def check_sub_networks(model: GANMetaArch) -> Dict[str, nn.Module]:
    """``model.sub_networks()``, checked: modules of the model, no parameter shared by two of them."""
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


def check_phases(model: GANMetaArch, sub_nets: Mapping[str, nn.Module]) -> Tuple[Phase, ...]:
    """``model.phases()``, checked: unique names, known sub-networks."""
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


class SimpleGANTrainer(TrainerBase):
    """Trains a :class:`GANMetaArch` with given optimizers; no config.

    Args:
        model: the meta-architecture (its ``sub_networks()``, ``phases()`` and ``loss_weights()`` are read once).
        data_loader: an iterable of batch dicts (iterated from the start when training starts).
        optimizers: ``{sub-network: optimizer}``; a sub-network without one is not stepped.
        schedulers: ``{sub-network: LR scheduler}``, each stepped once per iteration (default none).
        amp_dtype: ``torch.float16`` or ``torch.bfloat16`` for CUDA autocast, None for fp32.
        grad_clip: ``{sub-network: max gradient norm}`` (missing or 0: no clipping).

    Attributes: ``model``, ``data_loader``, ``optimizers``, ``schedulers``, ``scalers`` ``{phase: GradScaler}``,
    ``sub_nets``, ``phase_list``, ``loss_weights``, ``last_batch``, and fastreid's ``iter``/``storage``.
    """

    def __init__(
        self,
        model: GANMetaArch,
        data_loader: Iterable,
        optimizers: Mapping[str, torch.optim.Optimizer],
        *,
        schedulers: Optional[Mapping[str, Any]] = None,
        amp_dtype: Optional[torch.dtype] = None,
        grad_clip: Optional[Mapping[str, float]] = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.data_loader = data_loader
        self.sub_nets: Dict[str, nn.Module] = check_sub_networks(model)
        self.phase_list: Tuple[Phase, ...] = check_phases(model, self.sub_nets)
        model.prepare_training()  # before any checkpoint restores the RNGs (GANMetaArch.prepare_training)
        self.loss_weights: Dict[str, LossWeight] = {
            name: LossWeight.from_spec(w) for name, w in dict(model.loss_weights()).items()
        }
        unknown = sorted(set(optimizers) - set(self.sub_nets))
        if unknown:
            raise ValueError(f"Optimizers given for unknown sub-network(s) {unknown}; "
                             f"sub_networks() has {sorted(self.sub_nets)}")
        self.optimizers: Dict[str, torch.optim.Optimizer] = dict(optimizers)
        self.schedulers: Dict[str, Any] = dict(schedulers or {})
        self.grad_clip: Dict[str, float] = {net: float(v) for net, v in (grad_clip or {}).items()}
        # requires_grad as the model built it: parameters it froze itself are never trained
        self._trainable: Dict[str, List[nn.Parameter]] = {
            net: [p for p in module.parameters() if p.requires_grad] for net, module in self.sub_nets.items()
        }
        if amp_dtype not in (None, torch.float16, torch.bfloat16):
            raise ValueError(f"amp_dtype must be None, torch.float16 or torch.bfloat16, got {amp_dtype}")
        self.amp_dtype = amp_dtype
        # one scaler per phase: a phase backpropagates one loss into several optimizers, and the scale must
        # follow that loss's overflow history (torch's multi-optimizer recipe: one scaler, one update per loss)
        self.scalers: Dict[str, torch.amp.GradScaler] = {
            phase.name: torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16) for phase in self.phase_list
        }
        self.last_batch: Optional[Dict[str, Any]] = None
        self._data_iter: Optional[Any] = None
        self.iter = self.start_iter = self.max_iter = 0  # set by train()

    # ------------------------------------------------------------------ the loop
    def train(self, start_iter: int, max_iter: int) -> None:  # type: ignore[override]  # fastreid's counts epochs
        """Run iterations ``start_iter .. max_iter - 1`` with the registered hooks."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            self.storage.epoch = 0
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                self.iter = max_iter  # marks a finished run for the after_train hooks
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        self.model.train()
        # replicas start identical (model init and loaded weights may differ per rank)
        distributed.broadcast_model(self.model)
        self._data_iter = None  # (re)started from the loader's current position on the first step
        super().before_train()

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
        """One iteration: forward_train once, then every active phase (``docs/engine.md`` §1)."""
        if not self.model.training:
            raise RuntimeError("GANTrainer: the model was switched to eval mode during training")
        iteration = self.iter
        if self._data_iter is None:
            self._data_iter = iter(self.data_loader)
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
            clip = self.grad_clip.get(net, 0.0)
            if clip > 0:
                scaler.unscale_(self.optimizers[net])
                torch.nn.utils.clip_grad_norm_(self._trainable[net], clip)
        for net in stepped:
            scaler.step(self.optimizers[net])
        if stepped:
            scaler.update()
        # grads live only inside their phase: held until the next one, a generator phase's would sit beside the
        # discriminators' graphs (at full size FD-GAN's E+V+G grads are 0.3 GB)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
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
        storage = get_event_storage()
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
