"""Iteration-based hooks of the GAN engine (fastreid's EvalHook/PeriodicCheckpointer count epochs).

Periods count iterations and fire after iteration ``i`` when ``(i + 1) % period == 0``; 0 switches the
periodic action off.  Hooks that run a model (evaluation, image grids) do so in eval mode, without
gradients and without consuming the training RNGs, so switching them on or off never changes training.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor

from fastreid.engine.hooks import PeriodicWriter
from fastreid.engine.train_loop import HookBase
from fastreid.evaluation.testing import flatten_results_dict
from fastreid.utils import comm

from fastreid_gan.run_outputs import write_metrics_json

from .checkpoint import rng_isolated

__all__ = ["GANPeriodicCheckpointer", "GANEvalHook", "ImageGridHook", "GANPeriodicWriter"]

logger = logging.getLogger(__name__)


def _fires(period: int, iteration: int) -> bool:
    return period > 0 and (iteration + 1) % period == 0


class GANPeriodicCheckpointer(HookBase):
    """Checkpoint every ``period`` iterations and after the last one (``model_final.pth``).

    Runs on every rank (each contributes its RNG state); only the trainer's main process writes.
    """

    def __init__(self, period: int) -> None:
        self._period = period

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if iteration >= self.trainer.max_iter - 1:
            return  # after_train writes model_final
        if _fires(self._period, iteration):
            self.trainer.save_checkpoint(f"model_{iteration:07d}")

    def after_train(self) -> None:
        if self.trainer.iter >= self.trainer.max_iter:  # only when training finished normally
            self.trainer.save_checkpoint("model_final", iteration=self.trainer.max_iter - 1)


class GANEvalHook(HookBase):
    """Evaluate every ``period`` iterations and once after training; write ``metrics.json`` at the end.

    ``eval_function`` returns ``{dataset: {metric: value}}`` (empty on non-main ranks); it runs on every rank.
    """

    def __init__(self, period: int, eval_function: Callable[[], Mapping], output_dir: str) -> None:
        self._period = period
        self._func = eval_function
        self._output_dir = output_dir

    def _do_eval(self) -> Mapping:
        with rng_isolated():
            results = self._func()
        if results:
            flat = {}
            for key, value in flatten_results_dict(results).items():
                try:
                    flat[key] = float(value)
                except (TypeError, ValueError):
                    continue  # non-numeric entries (e.g. a dataset name) are not scalars to log
            if flat:
                self.trainer.storage.put_scalars(**flat, smoothing_hint=False)
        comm.synchronize()  # ranks may finish evaluation at different times
        return results

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if iteration < self.trainer.max_iter - 1 and _fires(self._period, iteration):
            self._do_eval()

    def after_train(self) -> None:
        if self.trainer.iter < self.trainer.max_iter:
            return  # training failed: no final evaluation
        results = self._do_eval()
        self.trainer.final_results = results
        if comm.is_main_process():
            write_metrics_json(self._output_dir, results or {})


class ImageGridHook(HookBase):
    """Every ``period`` iterations: ``model.visualize(batch)`` -> PNG grids in ``<output_dir>/images/`` and
    tensorboard images (through the event storage).

    The batch is the first training batch this hook sees, so successive grids show the same people.
    When every returned tensor has the same image size, one PNG ``iter_<i+1>.png`` holds one row per key
    (first ``samples`` images); otherwise each key gets its own ``<key>_iter_<i+1>.png``.
    """

    def __init__(self, period: int, output_dir: str, samples: int = 8) -> None:
        self._period = period
        self._dir = os.path.join(output_dir, "images")
        self._samples = max(int(samples), 1)
        self._batch: Optional[Dict[str, Any]] = None

    def after_step(self) -> None:
        if self._batch is None:
            self._batch = self.trainer.last_batch
        if _fires(self._period, self.trainer.iter):
            self.write_grids(self.trainer.iter + 1)

    def _rows(self) -> Dict[str, Tensor]:
        model = self.trainer.model
        was_training = model.training
        model.eval()  # BN statistics must not move; dropout off
        try:
            with torch.no_grad(), rng_isolated():
                images = model.visualize(self._batch)
        finally:
            model.train(was_training)
        rows = {}
        for name, tensor in (images or {}).items():
            tensor = tensor.detach()[: self._samples].float().cpu().clamp(0, 1)
            if tensor.dim() != 4 or tensor.shape[1] not in (1, 3):
                raise ValueError(f"visualize()['{name}'] must be (N, 3, H, W) in 0..1, got {tuple(tensor.shape)}")
            rows[name] = tensor.expand(-1, 3, -1, -1) if tensor.shape[1] == 1 else tensor
        return rows

    def write_grids(self, step: int) -> List[str]:
        """Write the grids for ``step`` (= iterations done); returns the PNG paths."""
        from torchvision.utils import make_grid, save_image

        if self._batch is None:
            return []
        rows = self._rows()
        if not rows:
            return []
        os.makedirs(self._dir, exist_ok=True)
        storage = self.trainer.storage
        paths = []
        if len({tuple(t.shape[1:]) for t in rows.values()}) == 1:
            ncol = max(t.shape[0] for t in rows.values())
            padded = [torch.cat([t, t.new_ones(ncol - t.shape[0], *t.shape[1:])]) for t in rows.values()]
            grid = make_grid(torch.cat(padded), nrow=ncol, padding=2, pad_value=1.0)
            paths.append(os.path.join(self._dir, f"iter_{step:07d}.png"))
            save_image(grid, paths[-1])
            storage.put_image("images/" + "|".join(rows), grid)
        else:
            for name, tensor in rows.items():
                grid = make_grid(tensor, nrow=tensor.shape[0], padding=2, pad_value=1.0)
                paths.append(os.path.join(self._dir, f"{name}_iter_{step:07d}.png"))
                save_image(grid, paths[-1])
                storage.put_image(f"images/{name}", grid)
        return paths


class GANPeriodicWriter(PeriodicWriter):
    """fastreid's ``PeriodicWriter`` (every ``period`` iterations and after the last one) that also writes once
    more after training, so the final evaluation's scalars reach ``events.json`` and tensorboard."""

    def after_train(self) -> None:
        for writer in self._writers:
            writer.write()
        super().after_train()  # closes the writers
