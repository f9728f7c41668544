"""Schedules counted in iterations: learning-rate factors (torch ``LambdaLR``) and loss weights.

Both are pure functions of the iteration index, so resuming from a checkpoint restores them exactly
from the iteration alone.  Conventions: iteration ``i`` is 0-based; the value "at iteration i" is the one
used while running iteration ``i``.
"""
from __future__ import annotations

import bisect
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LossWeight", "LRFactor", "IterationLRScheduler", "build_lr_scheduler", "loss_weights_from_config",
           "SCHEDULES"]

SCHEDULES = ("multistep", "linear", "constant")


@dataclass(frozen=True)
class LossWeight:
    """A loss weight: ``start_value`` before ``start_iter``, a linear ramp over ``ramp_iters`` iterations,
    ``end_value`` from ``start_iter + ramp_iters`` on (``ramp_iters=0``: a step at ``start_iter``)."""

    start_value: float
    end_value: float
    start_iter: int = 0
    ramp_iters: int = 0

    def __post_init__(self) -> None:
        if self.start_iter < 0 or self.ramp_iters < 0:
            raise ValueError(f"LossWeight: start_iter and ramp_iters must be >= 0, got {self}")

    @classmethod
    def constant(cls, value: float) -> "LossWeight":
        return cls(float(value), float(value))

    @classmethod
    def ramp(cls, start_value: float, end_value: float, start_iter: int, ramp_iters: int) -> "LossWeight":
        return cls(float(start_value), float(end_value), int(start_iter), int(ramp_iters))

    @classmethod
    def from_spec(cls, spec: Any) -> "LossWeight":
        """From a config value: ``v`` or ``[v]`` (constant) or ``[v0, v1, start_iter, ramp_iters]`` (ramp)."""
        if isinstance(spec, LossWeight):
            return spec
        if isinstance(spec, (int, float)):
            return cls.constant(spec)
        values = list(spec)
        if len(values) == 1:
            return cls.constant(values[0])
        if len(values) == 4:
            return cls.ramp(values[0], values[1], int(values[2]), int(values[3]))
        raise ValueError(
            f"A loss weight is [value] or [start_value, end_value, start_iter, ramp_iters]; got {spec!r}"
        )

    @property
    def is_constant(self) -> bool:
        return self.start_value == self.end_value

    def __call__(self, iteration: int) -> float:
        if iteration < self.start_iter:
            return self.start_value
        if iteration >= self.start_iter + self.ramp_iters:
            return self.end_value
        progress = (iteration - self.start_iter) / self.ramp_iters
        return self.start_value + (self.end_value - self.start_value) * progress


def loss_weights_from_config(node: Mapping[str, Any]) -> Dict[str, LossWeight]:
    """A method's loss-weight config node -> ``{loss name: LossWeight}``: key ``RECON_X`` weighs ``loss_recon_x``.

    So a method names a weight once, by its loss (the model returns ``"loss_recon_x"``; its config node has
    ``RECON_X: [5.0]``), and no method keeps a hand-written table from keys to loss names.
    """
    return {f"loss_{key.lower()}": LossWeight.from_spec(spec) for key, spec in node.items()}


@dataclass(frozen=True)
class LRFactor:
    """The factor applied to every base LR of an optimizer at iteration ``i``.

    ``multistep``: ``gamma ** (number of steps <= i)``; ``linear``: 1 until ``decay_start_iter``, then
    linearly down to 0 at ``max_iter``; ``constant``: 1.  A linear warm-up from ``warmup_factor`` to 1
    over the first ``warmup_iters`` iterations multiplies any of them.
    """

    kind: str = "constant"
    steps: Sequence[int] = ()
    gamma: float = 0.1
    decay_start_iter: int = 0
    max_iter: int = 0
    warmup_iters: int = 0
    warmup_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"Unknown LR schedule {self.kind!r}; expected one of {SCHEDULES}")
        object.__setattr__(self, "steps", tuple(sorted(int(s) for s in self.steps)))
        if self.kind == "linear" and not 0 <= self.decay_start_iter < self.max_iter:
            raise ValueError(
                f"linear LR schedule needs 0 <= DECAY_START_ITER < MAX_ITER, got {self.decay_start_iter} "
                f"and {self.max_iter}"
            )

    def __call__(self, iteration: int) -> float:
        if self.kind == "multistep":
            factor = self.gamma ** bisect.bisect_right(self.steps, iteration)
        elif self.kind == "linear":
            span = self.max_iter - self.decay_start_iter
            factor = 1.0 - min(max(iteration - self.decay_start_iter, 0), span) / span
        else:
            factor = 1.0
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            factor *= self.warmup_factor * (1.0 - alpha) + alpha
        return factor


class IterationLRScheduler(LambdaLR):
    """``LambdaLR`` stepped once per iteration: the LR at iteration ``i`` is ``base_lr * factor(i)``.

    Its state_dict leaves the factor out: the schedule's shape always comes from the config, the
    position (``last_epoch`` = iterations done) from the checkpoint.
    """

    def __init__(self, optimizer: Optimizer, factor: LRFactor, last_epoch: int = -1) -> None:
        self.factor = factor
        super().__init__(optimizer, factor, last_epoch=last_epoch)

    def state_dict(self) -> Dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas", "factor")}
        state["lr_lambdas"] = [None] * len(self.lr_lambdas)
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state = {k: v for k, v in state_dict.items() if k not in ("lr_lambdas", "factor")}
        self.__dict__.update(state)

    def step(self, epoch: Any = None) -> None:  # noqa: D102 - same as LambdaLR
        with warnings.catch_warnings():
            # A phase that runs every 2nd iteration (or starts late) has not stepped its optimizer yet;
            # stepping the schedule anyway is intended: schedules count iterations, not optimizer steps.
            warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\)` before `optimizer\.step\(\)")
            if epoch is None:
                super().step()
            else:
                super().step(epoch)


def build_lr_scheduler(optimizer: Optimizer, node: Any, max_iter: int) -> IterationLRScheduler:
    """The scheduler described by an optimizer node (``SCHED``, ``STEPS``, ``GAMMA``, warm-up, ...)."""
    factor = LRFactor(
        kind=str(node.SCHED).lower(),
        steps=tuple(node.STEPS),
        gamma=float(node.GAMMA),
        decay_start_iter=int(node.DECAY_START_ITER),
        max_iter=int(max_iter),
        warmup_iters=int(node.WARMUP_ITERS),
        warmup_factor=float(node.WARMUP_FACTOR),
    )
    return IterationLRScheduler(optimizer, factor)
