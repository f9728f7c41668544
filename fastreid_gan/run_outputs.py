"""What every training run writes besides checkpoints, the same for the baseline and the GAN trainers.

* ``<OUTPUT_DIR>/metrics.json``: the final evaluation, ``{test dataset: {metric: value}}`` (one entry per
  ``DATASETS.TESTS``, never flattened);
* ``<OUTPUT_DIR>/config.yaml`` (written by fastreid) gets a first comment line saying how to read it
  (:func:`mark_config_yaml`);
* the event writers: the console/``log.txt`` line (fastreid's ``CommonMetricPrinter``: iteration, ETA,
  losses, LR), ``<OUTPUT_DIR>/events.json`` (every logged scalar) and tensorboard events.

fastreid's own ``DefaultTrainer`` sends its per-iteration JSON to ``metrics.json``; here that file holds
the final evaluation only, so tools and scripts read one small file.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any, List

from fastreid.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardXWriter

__all__ = ["to_plain", "write_metrics_json", "build_event_writers", "mark_config_yaml", "CONFIG_YAML_HEADER"]

logger = logging.getLogger(__name__)


CONFIG_YAML_HEADER = (
    "# Written by fastreid-gan. Read it with fastreid_gan.config.get_cfg(), or with fastreid's get_cfg() after\n"
    "# `import fastreid_gan` (which adds the keys of the GAN engine and of every installed method).\n"
)


def mark_config_yaml(output_dir: str) -> None:
    """Put :data:`CONFIG_YAML_HEADER` on top of ``<output_dir>/config.yaml`` (fastreid's ``default_setup``
    and its hyper-parameter auto-scaling write the file; plain fastreid cannot read it). Idempotent."""
    path = os.path.join(output_dir, "config.yaml") if output_dir else ""
    if not path or not os.path.isfile(path):
        return
    with open(path) as f:
        text = f.read()
    if not text.startswith(CONFIG_YAML_HEADER):
        with open(path, "w") as f:
            f.write(CONFIG_YAML_HEADER + text)


def to_plain(value: Any) -> Any:
    """A JSON-friendly copy: mappings and sequences recursively, numpy/tensor scalars as python numbers."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def write_metrics_json(output_dir: str, results: Mapping[str, Any]) -> str:
    """Write ``{dataset: {metric: value}}`` to ``<output_dir>/metrics.json`` atomically; returns its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "metrics.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(to_plain(results), f, indent=2)
    os.replace(tmp, path)  # a reader never sees a half-written file
    logger.info("Final evaluation written to %s", path)
    return path


def build_event_writers(output_dir: str, max_iter: int) -> List[EventWriter]:
    """Console/log.txt (timer + ETA against ``max_iter``), ``events.json`` and tensorboard."""
    return [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "events.json")),
        TensorboardXWriter(output_dir),
    ]
