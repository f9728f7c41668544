"""What the retrieval tools' command lines share: one-line errors with exit code 2, the config and the model."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn, Optional, Sequence

from torch import nn

from .feature_extraction import RetrievalInputError

__all__ = ["OneLineArgumentParser", "load_config", "load_model", "run_cli", "one_line"]


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a ``KeyError``'s without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``error: ... (see --help)``), exit code 2 as argparse's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {one_line(Exception(message))} (see {self.prog} --help)\n")


def load_config(config_file: Optional[str], opts: Sequence[str] = ()) -> Any:
    """The project's config (every method's keys) merged with ``config_file`` and ``KEY VALUE`` overrides, the
    device resolved (``MODEL.DEVICE cuda`` without CUDA: CPU, with a warning).

    Raises:
        RetrievalInputError: a missing file, an unknown key, an odd list of overrides, bad ``TEST.LMP`` values.
    """
    from fastreid_gan.config import get_cfg, merge_config
    from fastreid_gan.runner import resolve_device

    try:
        cfg = merge_config(get_cfg(), config_file, list(opts))
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise RetrievalInputError(one_line(exc)) from None
    resolve_device(cfg)
    return cfg


def load_model(cfg: Any) -> nn.Module:
    """The config's model with ``MODEL.WEIGHTS`` loaded, in eval mode.  A checkpoint of another method or of a
    differently sized model is refused with the project's fit check (``docs/checkpoints.md``).

    Raises:
        RetrievalInputError: no ``MODEL.WEIGHTS``, a missing file, a file that is no checkpoint or does not fit.
    """
    from fastreid_gan.model_loading import load_model_for_inference

    weights = str(cfg.MODEL.WEIGHTS or "")
    if not weights:
        raise RetrievalInputError("no weights: add MODEL.WEIGHTS /path/to/model_final.pth to the command line "
                                  "(the checkpoint the config's model was trained to)")
    try:
        return load_model_for_inference(cfg, weights)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise RetrievalInputError(one_line(exc)) from None


def run_cli(main: Callable[[], int]) -> int:
    """Run a tool's ``main``: bad input (and a model's forward refusing the settings, e.g. ``TEST.LMP.PARTS``
    above the feature map's height, or a file that cannot be written) ends with one line on stderr and exit
    code 2."""
    from fastreid_gan.evaluation import EvaluationDataError

    try:
        return main()
    except (RetrievalInputError, EvaluationDataError, ValueError, OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
