"""Cross-domain evaluation: several trained models x several target datasets, without and with LMP.

What ``tools/cross_domain_eval.py`` does (``docs/cross_domain.md``).  Each model is a config + weights of any
method of the project (the ResNet baseline, DG-Net, FD-GAN, SPGAN/eSPGAN); a model evaluated on a dataset it was
not trained on is *direct transfer*.  Every row of the matrix (one model, one ``TEST.LMP`` setting) is evaluated
by :func:`~fastreid_gan.evaluation.evaluate_on_test_datasets` with ``DATASETS.TESTS`` set to all the target
datasets: the code path of ``tools/train_net.py --eval-only``, whose equivalent command each row records.

Order of work:

1. cheap checks of every input: the target datasets are registered and readable, each model's config merges,
   its weights file exists (:func:`prepare_models`, :func:`check_datasets`);
2. every model is built and loaded once (the weights must fit the config) and, for LMP, its last feature map's
   height is read from one image (``TEST.LMP.PARTS`` must not exceed it), then freed (:func:`check_model`);
3. the evaluation, one model at a time (loaded once; LMP is switched on the loaded model with
   :func:`~fastreid_gan.layers.set_local_pooling`), freed before the next (:func:`evaluate_model`).

So bad input stops before the long work, and the outputs (:func:`write_outputs`) are written only at the end.
"""
from __future__ import annotations

import datetime
import difflib
import gc
import json
import logging
import math
import os
import shlex
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from fastreid.data.datasets import DATASET_REGISTRY

from fastreid_gan.data.build import datasets_root
from fastreid_gan.layers.local_pooling import POOL_TYPES, LocalPooling, set_local_pooling

from .dataset_evaluation import build_evaluator, evaluate_on_test_datasets

__all__ = [
    "UNTRAINED",
    "CrossDomainInputError",
    "ModelSpec",
    "LMPSetting",
    "PreparedModel",
    "Cell",
    "Row",
    "CrossDomainResult",
    "parse_model_spec",
    "parse_dataset_list",
    "parse_parts_list",
    "check_datasets",
    "prepare_models",
    "lmp_settings_for",
    "check_model",
    "evaluate_model",
    "run_cross_domain",
    "train_net_command",
    "write_outputs",
    "check_output_dir",
    "OUTPUT_FILES",
]

logger = logging.getLogger(__name__)

#: the weights part of ``NAME=CONFIG:untrained``: random weights (the floor training must beat)
UNTRAINED = "untrained"
#: what :func:`write_outputs` writes into the output folder
OUTPUT_FILES = ("matrix.md", "matrix.json", "heatmap.png")
#: the metrics a progress line and the markdown matrix show
SHOWN_METRICS = ("Rank-1", "mAP")

Progress = Callable[[str], None]


class CrossDomainInputError(ValueError):
    """Bad input to the cross-domain evaluation: the message names the problem and the fix."""


# ------------------------------------------------------------------------------------------------------- input
@dataclass(frozen=True)
class ModelSpec:
    """One ``--model NAME=CONFIG[:WEIGHTS]``.  ``weights`` None: the config's ``MODEL.WEIGHTS``;
    :data:`UNTRAINED`: random weights."""

    name: str
    config_file: str
    weights: Optional[str] = None

    @property
    def untrained(self) -> bool:
        return self.weights == UNTRAINED


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME=CONFIG[:WEIGHTS]`` -> :class:`ModelSpec`.  The config ends at the first ``:`` after ``.yml`` /
    ``.yaml`` (else at the first ``:``), so the weights path may hold colons.

    Raises:
        CrossDomainInputError: no ``=``, an empty name or config.
    """
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not rest:
        raise CrossDomainInputError(f"--model {text!r}: expected NAME=CONFIG[:WEIGHTS], e.g. --model "
                                    f"baseline=configs/Synthetic/baseline_market.yml:logs/baseline/model_final.pth")
    config, weights = rest, None
    lowered = rest.lower()
    cut = -1
    for suffix in (".yml:", ".yaml:"):
        at = lowered.find(suffix)
        if at >= 0:
            cut = at + len(suffix) - 1
            break
    if cut < 0 and ":" in rest:
        cut = rest.index(":")
    if cut >= 0:
        config, weights = rest[:cut], rest[cut + 1:]
        if not weights:
            raise CrossDomainInputError(f"--model {text!r}: empty weights after ':'; give NAME=CONFIG:/path/to/"
                                        f"model_final.pth, NAME=CONFIG:{UNTRAINED}, or NAME=CONFIG (MODEL.WEIGHTS)")
    if not config:
        raise CrossDomainInputError(f"--model {text!r}: the config file is missing; expected NAME=CONFIG[:WEIGHTS]")
    return ModelSpec(name, config, weights)


def _split_list(text: str) -> List[str]:
    return [item.strip() for item in str(text).split(",") if item.strip()]


def parse_dataset_list(text: str) -> List[str]:
    """``"A,B"`` -> ``["A", "B"]`` (duplicates dropped, order kept).

    Raises:
        CrossDomainInputError: the list is empty.
    """
    names = list(OrderedDict.fromkeys(_split_list(text)))
    if not names:
        raise CrossDomainInputError(f"--datasets {text!r}: no dataset names; give e.g. "
                                    f"--datasets SyntheticMarket,SyntheticDuke")
    return names


def parse_parts_list(text: str) -> List[int]:
    """``"4,8"`` -> ``[4, 8]`` (``--lmp-parts``).

    Raises:
        CrossDomainInputError: not integers >= 1.
    """
    parts: List[int] = []
    for item in _split_list(text):
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value < 1 or str(value) != item.lstrip("+"):
            raise CrossDomainInputError(f"--lmp-parts {text!r}: each entry is a number of horizontal stripes, an "
                                        f"integer >= 1 (the paper uses 8; Table 5: 1,2,4,8); got {item!r}")
        parts.append(value)
    if not parts:
        raise CrossDomainInputError(f"--lmp-parts {text!r}: no value; give e.g. --lmp-parts 4 or --lmp-parts 1,2,4,8")
    return list(OrderedDict.fromkeys(parts))


@dataclass(frozen=True)
class LMPSetting:
    """One ``TEST.LMP`` setting of a row: off (``parts`` None) or on with ``parts`` stripes and ``pool``."""

    parts: Optional[int] = None
    pool: str = "max"

    @property
    def enabled(self) -> bool:
        return self.parts is not None

    @property
    def label(self) -> str:
        return f"P={self.parts} {self.pool}" if self.enabled else "off"

    def overrides(self) -> List[str]:
        """The ``TEST.LMP`` ``KEY VALUE`` pairs of this setting (what a ``tools/train_net.py`` command adds)."""
        if not self.enabled:
            return ["TEST.LMP.ENABLED", "False"]
        return ["TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", str(self.parts), "TEST.LMP.POOL", self.pool]

    def to_json(self) -> Dict[str, Any]:
        return {"enabled": self.enabled, "parts": self.parts, "pool": self.pool if self.enabled else None}


def _registered_datasets() -> List[str]:
    return sorted(getattr(DATASET_REGISTRY, "_obj_map", {}))


def _dataset_error(name: str, exc: BaseException) -> CrossDomainInputError:
    return CrossDomainInputError(f"dataset {name}: {_one_line(exc)}")


def check_datasets(names: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """Check that every dataset is registered in fastreid's ``DATASET_REGISTRY`` and that its query set and
    gallery can be read (``$FASTREID_DATASETS``; synthetic datasets are generated here on first use).
    Returns ``{name: {"query": n, "gallery": m}}``.

    Raises:
        CrossDomainInputError: an unknown name (with the closest registered ones), a missing folder, a misnamed
            file or an empty query set or gallery.
    """
    import fastreid_gan.data  # noqa: F401  (registers the project's datasets)

    registered = _registered_datasets()
    sizes: Dict[str, Dict[str, int]] = {}
    for name in names:
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise CrossDomainInputError(f"--datasets: unknown dataset {name!r}.{hint} Names are fastreid's "
                                        f"registered datasets (DATASET_REGISTRY), e.g. Market1501, DukeMTMC, "
                                        f"MSMT17, SyntheticMarket, SyntheticDuke")
        try:
            data = DATASET_REGISTRY.get(name)(root=datasets_root())
            sizes[name] = {"query": len(data.query), "gallery": len(data.gallery)}
        except (OSError, RuntimeError, ValueError, AssertionError) as exc:
            raise _dataset_error(name, exc) from None
        empty = [part for part, n in sizes[name].items() if n == 0]
        if empty:
            raise CrossDomainInputError(f"dataset {name}: its {' and '.join(empty)} set is empty under "
                                        f"{datasets_root()}: check the dataset's folders (FASTREID_DATASETS)")
    return sizes


@dataclass
class PreparedModel:
    """A model's merged config (device resolved, not frozen) and where its weights come from."""

    spec: ModelSpec
    cfg: Any
    weights: Optional[str]          # a file, or None for random weights
    opts: List[str]                 # the KEY VALUE overrides merged into cfg (the shared ones)
    supports_lmp: bool = False      # set by check_model
    map_height: Optional[int] = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def train_datasets(self) -> List[str]:
        return [str(n) for n in self.cfg.DATASETS.NAMES]


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def prepare_models(specs: Sequence[ModelSpec], opts: Sequence[str] = ()) -> List[PreparedModel]:
    """Merge each model's config with ``opts`` (shared ``KEY VALUE`` overrides) and resolve its weights:
    ``:WEIGHTS``, else the config's ``MODEL.WEIGHTS``; ``:untrained`` gives random weights.

    Raises:
        CrossDomainInputError: no models, a name given twice, a missing config or weights file, a config or
            override that does not merge (unknown key ...), no weights given.
    """
    from fastreid_gan.config import get_cfg, merge_config
    from fastreid_gan.runner import resolve_device

    if not specs:
        raise CrossDomainInputError("no models: give at least one --model NAME=CONFIG[:WEIGHTS]")
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CrossDomainInputError(f"--model names must differ (they label the matrix's rows): "
                                    f"{', '.join(twice)} given more than once")
    prepared = []
    for spec in specs:
        where = f"--model {spec.name}"
        if not os.path.isfile(spec.config_file):
            raise CrossDomainInputError(f"{where}: config file not found: {spec.config_file} (NAME=CONFIG[:WEIGHTS] "
                                        f"takes the .yml the model was trained with, e.g. its run's config.yaml)")
        try:
            cfg = merge_config(get_cfg(), spec.config_file, list(opts))
        except (OSError, ValueError, KeyError, AssertionError) as exc:
            raise CrossDomainInputError(f"{where}: {_one_line(exc)}") from None
        resolve_device(cfg)
        if spec.untrained:
            weights = None
        else:
            weights = spec.weights if spec.weights is not None else str(cfg.MODEL.WEIGHTS or "")
            if not weights:
                raise CrossDomainInputError(f"{where}: no weights: {spec.config_file} has no MODEL.WEIGHTS; give "
                                            f"{spec.name}={spec.config_file}:/path/to/model_final.pth (or "
                                            f":{UNTRAINED} for random weights)")
            if not os.path.isfile(weights):
                raise CrossDomainInputError(f"{where}: weights file not found: {weights} (give an existing "
                                            f"checkpoint: {spec.name}={spec.config_file}:/path/to/model_final.pth)")
        prepared.append(PreparedModel(spec, cfg, weights, list(opts)))
    return prepared


def lmp_settings_for(cfg: Any, lmp: bool, parts: Optional[Sequence[int]] = None,
                     pool: Optional[str] = None) -> List[LMPSetting]:
    """The rows of one model: with ``lmp``, LMP off and then on with each of ``parts`` (default: the config's
    ``TEST.LMP.PARTS``) and ``pool`` (default ``TEST.LMP.POOL``); without, the config's own setting.

    Raises:
        CrossDomainInputError: ``pool`` is not max/avg.
    """
    pool = str(cfg.TEST.LMP.POOL) if pool is None else pool
    if pool not in POOL_TYPES:
        raise CrossDomainInputError(f"--lmp-pool {pool!r}: use one of {', '.join(POOL_TYPES)}")
    if not lmp:
        return [LMPSetting(int(cfg.TEST.LMP.PARTS), pool) if cfg.TEST.LMP.ENABLED else LMPSetting()]
    return [LMPSetting()] + [LMPSetting(int(p), pool) for p in (parts or [int(cfg.TEST.LMP.PARTS)])]


# ---------------------------------------------------------------------------------------------------- the work
def _seed_for_build(prepared: PreparedModel) -> None:
    """As ``tools/train_net.py``: seeded when ``SEED >= 0`` or with random weights (reproducible floors)."""
    from fastreid_gan.runner import seed_everything

    if prepared.cfg.SEED >= 0 or prepared.weights is None:
        seed_everything(max(int(prepared.cfg.SEED), 0))


def _load(prepared: PreparedModel) -> nn.Module:
    from fastreid_gan.model_loading import load_model_for_inference

    cfg = prepared.cfg.clone()
    cfg.defrost()
    cfg.TEST.LMP.ENABLED = False  # switched per row on the loaded model
    _seed_for_build(prepared)
    return load_model_for_inference(cfg, prepared.weights, source="weights")  # errors get "--model NAME: " first


def _release_memory() -> None:
    """After the caller dropped its last reference to a model: collect it, and give CUDA's cache back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _feature_map_height(model: nn.Module, cfg: Any) -> Optional[int]:
    """The height of the model's last re-id feature map at ``INPUT.SIZE_TEST`` (None: no LMP support)."""
    net = getattr(model, "module", model)
    feature_map = getattr(net, "reid_feature_map", None)
    if not callable(feature_map) or not hasattr(net, "local_pooling"):
        return None
    height, width = (int(v) for v in cfg.INPUT.SIZE_TEST)
    images = torch.full((1, 3, height, width), 127.5, device=torch.device(cfg.MODEL.DEVICE))
    with torch.no_grad():
        return int(feature_map(images).shape[2])


def check_model(prepared: PreparedModel, settings: Sequence[LMPSetting]) -> PreparedModel:
    """Build and load the model (the weights must fit its config), read its feature map's height when a
    setting needs LMP, free it.  Sets ``supports_lmp`` and ``map_height``.

    Raises:
        CrossDomainInputError: the weights do not fit (or are no checkpoint), ``PARTS`` > the map's height.
    """
    where = f"--model {prepared.name}"
    model = None
    try:
        model = _load(prepared)
        height = _feature_map_height(model, prepared.cfg)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CrossDomainInputError(f"{where}: {_one_line(exc)}") from None
    finally:
        model = None
        _release_memory()
    prepared.supports_lmp, prepared.map_height = height is not None, height
    too_many = [s.parts for s in settings if s.enabled and height is not None and s.parts > height]
    if too_many:
        size = "x".join(str(v) for v in prepared.cfg.INPUT.SIZE_TEST)
        raise CrossDomainInputError(
            f"{where}: TEST.LMP.PARTS = {max(too_many)} horizontal stripes, but the model's last feature map has "
            f"only {height} rows at INPUT.SIZE_TEST {size}: give --lmp-parts at most {height} (e.g. "
            f"--lmp-parts {height}; without --lmp: TEST.LMP.PARTS {height}), or a larger INPUT.SIZE_TEST")
    return prepared


@dataclass
class Cell:
    """One dataset's evaluation in a row: every metric of the evaluator, and its time."""

    dataset: str
    metrics: Dict[str, float]
    seconds: float
    in_domain: bool  # the dataset is one of the model's DATASETS.NAMES (else: direct transfer)


@dataclass
class Row:
    """One model with one LMP setting; ``skipped`` says why a row has no cells (a model without LMP support)."""

    model: str
    lmp: LMPSetting
    command: str
    cells: Dict[str, Cell] = field(default_factory=OrderedDict)
    skipped: Optional[str] = None

    @property
    def label(self) -> str:
        return self.model if not self.lmp.enabled else f"{self.model} + LMP ({self.lmp.label})"


def _tests_literal(datasets: Sequence[str]) -> str:
    inner = ", ".join(f'"{d}"' for d in datasets)
    return f"({inner},)" if len(datasets) == 1 else f"({inner})"


def _row_config(prepared: PreparedModel, datasets: Sequence[str], setting: LMPSetting) -> Any:
    cfg = prepared.cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TESTS = tuple(datasets)
    cfg.TEST.LMP.ENABLED = setting.enabled
    if setting.enabled:
        cfg.TEST.LMP.PARTS, cfg.TEST.LMP.POOL = int(setting.parts), setting.pool
    cfg.freeze()
    return cfg


def train_net_command(prepared: PreparedModel, datasets: Sequence[str], setting: LMPSetting) -> str:
    """The ``tools/train_net.py --eval-only`` command that evaluates the same row (same code path, same numbers)."""
    cmd = ["python", "tools/train_net.py", "--config-file", prepared.spec.config_file, "--eval-only"]
    if prepared.weights is None:
        cmd.append("--untrained")
    cmd += prepared.opts
    if prepared.weights is not None:
        cmd += ["MODEL.WEIGHTS", prepared.weights]
    cmd += ["DATASETS.TESTS", _tests_literal(datasets)] + setting.overrides()
    return shlex.join(cmd)


def _format_metrics(metrics: Dict[str, float]) -> str:
    return "  ".join(f"{k.replace('Rank-', 'R')} {metrics[k]:5.1f}" for k in SHOWN_METRICS if k in metrics)


def evaluate_model(prepared: PreparedModel, datasets: Sequence[str], settings: Sequence[LMPSetting],
                   progress: Progress = print, counter: Optional[List[int]] = None, total: int = 0) -> List[Row]:
    """Evaluate one model on ``datasets`` with each LMP setting: loaded once, freed at the end.

    Each row is one :func:`evaluate_on_test_datasets` call with ``DATASETS.TESTS = datasets``; each dataset
    prints one progress line with its time when its evaluation ends.  A setting with LMP on a model without LMP
    support gives a skipped row (its reason named, no numbers).
    """
    counter = counter if counter is not None else [0]
    rows = []
    model = _load(prepared)
    try:
        for setting in settings:
            row = Row(prepared.name, setting, train_net_command(prepared, datasets, setting))
            rows.append(row)
            if setting.enabled and not prepared.supports_lmp:
                net = getattr(model, "module", model)
                row.skipped = (f"{type(net).__name__} does not support TEST.LMP (no reid_feature_map; "
                               f"docs/lmp.md)")
                for dataset in datasets:
                    counter[0] += 1
                    progress(f"  [{counter[0]}/{total}] {row.label} x {dataset}: skipped, {row.skipped}")
                continue
            if prepared.supports_lmp:
                set_local_pooling(model, LocalPooling(setting.parts, setting.pool) if setting.enabled else None)
            cfg = _row_config(prepared, datasets, setting)

            def timed_builder(cfg_: Any, dataset: str, _row: Row = row) -> Tuple[Any, Any]:
                start = time.perf_counter()
                loader, evaluator = build_evaluator(cfg_, dataset)
                evaluate = evaluator.evaluate

                def evaluate_and_report() -> Any:
                    result = evaluate()
                    seconds = time.perf_counter() - start
                    metrics = OrderedDict((k, float(v)) for k, v in (result or {}).items())
                    _row.cells[dataset] = Cell(dataset, metrics, seconds, dataset in prepared.train_datasets)
                    counter[0] += 1
                    progress(f"  [{counter[0]}/{total}] {_row.label} x {dataset}: {_format_metrics(metrics)}  "
                             f"({seconds:.1f} s)")
                    return result

                evaluator.evaluate = evaluate_and_report
                return loader, evaluator

            evaluate_on_test_datasets(cfg, model, timed_builder)
    finally:
        model = None
        _release_memory()
    return rows


@dataclass
class CrossDomainResult:
    """The matrix: ``rows`` (model x LMP setting) by ``datasets``, and what produced it."""

    datasets: List[str]
    models: List[PreparedModel]
    rows: List[Row]
    opts: List[str]
    seconds: float
    command: str = ""
    created: str = ""

    def cell(self, model: str, dataset: str, lmp: Optional[LMPSetting] = None) -> Optional[Cell]:
        """The cell of ``model`` (LMP off unless ``lmp``) on ``dataset``; None when skipped."""
        lmp = lmp or LMPSetting()
        for row in self.rows:
            if row.model == model and row.lmp == lmp:
                return row.cells.get(dataset)
        raise KeyError(f"no row {model!r} with LMP {lmp.label}")

    def to_json(self) -> Dict[str, Any]:
        return {
            "tool": "tools/cross_domain_eval.py",
            "command": self.command,
            "created": self.created,
            "seconds": round(self.seconds, 3),
            "datasets": list(self.datasets),
            "overrides": list(self.opts),
            "datasets_root": os.path.abspath(datasets_root()),
            "models": [{
                "name": m.name,
                "config_file": m.spec.config_file,
                "weights": m.weights if m.weights is not None else UNTRAINED,
                "meta_architecture": str(m.cfg.MODEL.META_ARCHITECTURE),
                "train_datasets": m.train_datasets,
                "input_size_test": [int(v) for v in m.cfg.INPUT.SIZE_TEST],
                "supports_lmp": m.supports_lmp,
                "feature_map_height": m.map_height,
            } for m in self.models],
            "rows": [{
                "model": r.model,
                "label": r.label,
                "lmp": r.lmp.to_json(),
                "command": r.command,
                "skipped": r.skipped,
                "cells": {d: ({"metrics": dict(c.metrics), "seconds": round(c.seconds, 3), "in_domain": c.in_domain}
                              if (c := r.cells.get(d)) is not None else None) for d in self.datasets},
            } for r in self.rows],
        }

    def to_markdown(self) -> str:
        def cell_text(row: Row, dataset: str) -> str:
            c = row.cells.get(dataset)
            if c is None:
                return "n/a"
            text = " / ".join(f"{c.metrics[k]:.1f}" for k in SHOWN_METRICS if k in c.metrics)
            return text + (" †" if c.in_domain else "")

        lines = ["# Cross-domain evaluation", "",
                 "Rank-1 / mAP (%) of each model (rows) on each target dataset (columns), without and with local max "
                 "pooling (LMP: P stripes, max or avg pooling). † marks a dataset the model was trained on (its "
                 "config's DATASETS.NAMES); the other cells are direct transfer. Every metric of every cell, the "
                 "configs, weights and commands: matrix.json.", "",
                 "| model | LMP | " + " | ".join(self.datasets) + " |",
                 "| --- | --- | " + " | ".join("---" for _ in self.datasets) + " |"]
        for row in self.rows:
            lines.append(f"| {row.model} | {row.lmp.label} | " + " | ".join(cell_text(row, d) for d in self.datasets)
                         + " |")
        skipped = [r for r in self.rows if r.skipped]
        if skipped:
            lines += [""] + [f"- n/a: {r.label}: {r.skipped}" for r in skipped]
        lines += ["", "## Models", "", "| model | method | trained on | config | weights |",
                  "| --- | --- | --- | --- | --- |"]
        for m in self.models:
            lines.append(f"| {m.name} | {m.cfg.MODEL.META_ARCHITECTURE} | {', '.join(m.train_datasets)} | "
                         f"`{m.spec.config_file}` | `{m.weights if m.weights is not None else UNTRAINED}` |")
        lines += ["", "## Commands", "", f"Each row is what this `tools/train_net.py --eval-only` command evaluates "
                  f"(datasets read from `{os.path.abspath(datasets_root())}`, `FASTREID_DATASETS`):", "",
                  "```bash"] + [r.command for r in self.rows if not r.skipped] + ["```", ""]
        if self.command:
            lines += [f"Made by `{self.command}` in {self.seconds:.0f} s ({self.created}).", ""]
        return "\n".join(lines)


def run_cross_domain(specs: Sequence[ModelSpec], datasets: Optional[Sequence[str]] = None, *, lmp: bool = False,
                     lmp_parts: Optional[Sequence[int]] = None, lmp_pool: Optional[str] = None,
                     opts: Sequence[str] = (), progress: Progress = print, command: str = "") -> CrossDomainResult:
    """Every model x every dataset x every LMP setting (see the module docstring for the order of work).

    ``datasets`` None: the union of the models' ``DATASETS.TESTS``.  ``opts``: ``KEY VALUE`` overrides for every
    model.  ``progress`` gets one line per model check and per cell.

    Raises:
        CrossDomainInputError: bad input (before the evaluation starts); evaluation errors pass through.
    """
    start = time.perf_counter()
    prepared = prepare_models(specs, opts)
    if datasets is None:
        datasets = list(OrderedDict.fromkeys(str(d) for m in prepared for d in m.cfg.DATASETS.TESTS))
    datasets = list(datasets)
    if not datasets:
        raise CrossDomainInputError("no target datasets: give --datasets A,B (or DATASETS.TESTS in the configs)")
    sizes = check_datasets(datasets)
    settings = {m.name: lmp_settings_for(m.cfg, lmp, lmp_parts, lmp_pool) for m in prepared}
    for m in prepared:
        t0 = time.perf_counter()
        check_model(m, settings[m.name])
        lmp_text = (f"LMP map height {m.map_height}" if m.supports_lmp else "no LMP support")
        progress(f"  checked {m.name}: {m.cfg.MODEL.META_ARCHITECTURE}, "
                 f"{'weights fit' if m.weights else 'random weights'}, {lmp_text} ({time.perf_counter() - t0:.1f} s)")
    total = sum(len(settings[m.name]) for m in prepared) * len(datasets)
    described = ", ".join(f"{d}: {s['query']} queries, {s['gallery']} gallery" for d, s in sizes.items())
    progress(f"  {len(prepared)} models x {len(datasets)} datasets ({described}) x LMP settings = {total} cells")
    rows: List[Row] = []
    counter = [0]
    for m in prepared:
        rows += evaluate_model(m, datasets, settings[m.name], progress, counter, total)
    return CrossDomainResult(datasets, prepared, rows, list(opts), time.perf_counter() - start, command,
                             datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


# ---------------------------------------------------------------------------------------------------- outputs
def _write_heatmap(result: CrossDomainResult, path: Path) -> None:
    """mAP per cell (rows x datasets), 0..100, the value written in each cell (``†``: in-domain); n/a cells grey."""
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.full((len(result.rows), len(result.datasets)), np.nan)
    in_domain = np.zeros(values.shape, dtype=bool)
    for i, row in enumerate(result.rows):
        for j, dataset in enumerate(result.datasets):
            c = row.cells.get(dataset)
            if c is not None and "mAP" in c.metrics:
                values[i, j], in_domain[i, j] = c.metrics["mAP"], c.in_domain
    column = max(1.6, 0.085 * max(len(d) for d in result.datasets))  # inches: room for the dataset's name
    fig = Figure(figsize=(2.4 + column * len(result.datasets), 1.2 + 0.45 * len(result.rows)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#cccccc")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=100.0, aspect="auto")
    ax.set_xticks(range(len(result.datasets)), labels=result.datasets)
    ax.set_yticks(range(len(result.rows)), labels=[r.label for r in result.rows])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "n/a" if math.isnan(v) else f"{v:.1f}" + (" †" if in_domain[i, j] else "")
            ax.text(j, i, text, ha="center", va="center", color="black" if math.isnan(v) or v > 60 else "white",
                    fontsize=9)
    ax.set_title("mAP (%), model x target dataset († trained on it)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100, format="png")


def write_outputs(result: CrossDomainResult, output_dir: str) -> Dict[str, Path]:
    """Write :data:`OUTPUT_FILES` into ``output_dir``: all are written into a hidden staging folder there first,
    then each is moved into place with an atomic rename, so a failure never leaves a half-written file (and
    nothing is replaced unless all three were written)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cross_domain-", dir=str(out)))
    try:
        (staging / "matrix.md").write_text(result.to_markdown())
        (staging / "matrix.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        _write_heatmap(result, staging / "heatmap.png")
        written = {}
        for name in OUTPUT_FILES:
            os.replace(staging / name, out / name)
            written[name] = out / name
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_output_dir(output_dir: str) -> None:
    """Raises :class:`CrossDomainInputError` when ``output_dir`` cannot be a folder (before the long work)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise CrossDomainInputError(f"--output-dir {output_dir}: exists and is not a folder; give a folder path")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(str(parent), os.W_OK):
        raise CrossDomainInputError(f"--output-dir {output_dir}: {parent} is not writable; give another folder")
