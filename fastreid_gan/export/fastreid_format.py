"""``--format fastreid``: a method's test-time network as fastreid's own ``Baseline`` (backbone + head), written as a
checkpoint and a ``config.yaml`` that fastreid's ``DefaultPredictor`` loads.

Each exportable meta-architecture registers a :class:`FastreidDeployment` (the core registers the baseline's; the
projects theirs, in ``<package>/deploy_parts.py``): which fastreid backbone and head build its test-time network
and how the method's checkpoint keys map onto ``backbone.*`` / ``heads.*``.  :func:`export_fastreid` loads the
method's checkpoint (with the usual fit check), re-keys it, writes ``model_final.pth`` (``{"model": state_dict}``)
and ``config.yaml`` (fastreid's keys only, plus the parts' own keys where the parts are the plugin's), and checks
that ``DefaultPredictor`` on the written files gives the method's eval features.

Where both parts are fastreid's own (the ResNet baseline, SPGAN's IDE+), the files need nothing of this project.
Where one is registered by a project (DG-Net's appearance encoder and two-branch head; FD-GAN's E and eSPGAN's
feature learner, whose ResNets have torchvision's stem max-pool, which fastreid's ``build_resnet_backbone``
lacks), the config's first line names the package to import before ``get_cfg()``.  ``TEST.LMP`` is the plugin's
``Baseline`` switch: kept in the plugin exports, refused for the stock ones (stock fastreid has no such key).
See ``docs/export.md``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

import torch
from torch import Tensor, nn

from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.heads import REID_HEADS_REGISTRY

from fastreid_gan.compat import fastreid_default_config
from fastreid_gan.model_loading import load_model_for_inference

__all__ = [
    "FastreidExportError",
    "FastreidDeployment",
    "register_fastreid_deployment",
    "get_fastreid_deployment",
    "rekey_state_dict",
    "plugin_package",
    "deploy_config",
    "deploy_state_dict",
    "load_deploy_config",
    "export_fastreid",
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "POOL_FEATURE_HEAD",
]

CHECKPOINT_NAME = "model_final.pth"
CONFIG_NAME = "config.yaml"
# the written files must give the method's features; float32 convolutions in another memory format (DG-Net's
# channels_last) differ in the last bits only
CHECK_TOLERANCE = 1e-4


#: fastreid's ``EmbeddingHead`` returning the global average pool as it is (no bottleneck, no BNNeck): the test
#: feature of FD-GAN's E and eSPGAN's feature learner
POOL_FEATURE_HEAD = {"POOL_LAYER": "GlobalAvgPool", "EMBEDDING_DIM": 0, "WITH_BNNECK": False, "NECK_FEAT": "before",
                     "CLS_LAYER": "Linear"}


class FastreidExportError(ValueError):
    """The config or checkpoint cannot be exported as a fastreid ``Baseline``; the message is one line saying what
    is wrong and what to do."""


@dataclass(frozen=True)
class FastreidDeployment:
    """How one meta-architecture's test-time network is built by fastreid's ``Baseline``.

    Attributes:
        meta_arch: the method's ``MODEL.META_ARCHITECTURE``.
        prefixes: method key prefix -> Baseline key prefix; tensors under no prefix are not exported (generators,
            discriminators, identity classifiers).
        backbone: ``MODEL.BACKBONE.NAME`` (a ``BACKBONE_REGISTRY`` entry); "" keeps the config's.
        head: ``MODEL.HEADS.NAME`` (a ``REID_HEADS_REGISTRY`` entry); "" keeps the config's.
        heads: other ``MODEL.HEADS`` values of the deployable model (e.g. the stock ``EmbeddingHead`` set to return
            the plain average pool).
        keep: config keys or subtrees the parts read besides fastreid's (e.g. ``"MODEL.DGNET.TEST_FINE_WEIGHT"``),
            copied into the written config.
    """

    meta_arch: str
    prefixes: Mapping[str, str]
    backbone: str = ""
    head: str = ""
    heads: Mapping[str, Any] = field(default_factory=dict)
    keep: Tuple[str, ...] = ()


_DEPLOYMENTS: Dict[str, FastreidDeployment] = {}


def register_fastreid_deployment(spec: FastreidDeployment) -> FastreidDeployment:
    """Register (or re-register, e.g. on module reload) ``spec.meta_arch``'s deployment."""
    _DEPLOYMENTS[spec.meta_arch] = spec
    return spec


def get_fastreid_deployment(meta_arch: str) -> FastreidDeployment:
    """``meta_arch``'s deployment; a :class:`FastreidExportError` naming the exportable ones otherwise."""
    from fastreid_gan.config import load_projects

    load_projects()  # each project registers its deployment when imported
    if meta_arch == "SPGAN":
        raise FastreidExportError(
            "MODEL.META_ARCHITECTURE SPGAN is an image translator, not a re-id model: export the IDE+ feature learner "
            "trained on its translations (a Baseline, e.g. projects/SPGAN/configs/ide_market2duke.yml with that "
            "run's MODEL.WEIGHTS)")
    if meta_arch not in _DEPLOYMENTS:
        raise FastreidExportError(
            f"MODEL.META_ARCHITECTURE {meta_arch!r} has no --format fastreid export; exportable: "
            f"{', '.join(sorted(_DEPLOYMENTS))} (or use --format onnx)")
    return _DEPLOYMENTS[meta_arch]


# fastreid's own model: the same keys (its identity classifier aside)
register_fastreid_deployment(FastreidDeployment("Baseline", {"backbone.": "backbone.", "heads.": "heads."}))


def rekey_state_dict(state: Mapping[str, Tensor], prefixes: Mapping[str, str]) -> Dict[str, Tensor]:
    """The tensors of ``state`` under one of ``prefixes`` (the longest that matches), renamed to its value; the
    others are left out. Tensors are detached, contiguous CPU copies (the caller's are not touched)."""
    ordered = sorted(prefixes.items(), key=lambda item: -len(item[0]))
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        for old, new in ordered:
            if key.startswith(old):
                out[new + key[len(old):]] = value.detach().cpu().contiguous().clone()
                break
    return out


def plugin_package(cfg: Any) -> str:
    """The package that registers the config's backbone or head ("" when both are fastreid's own)."""
    for registry, name in ((BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME), (REID_HEADS_REGISTRY, cfg.MODEL.HEADS.NAME)):
        module = getattr(registry.get(name), "__module__", "fastreid")
        if module.split(".")[0] != "fastreid":
            return module.split(".")[0]
    return ""


def _copy_known(dst: Any, src: Any) -> None:
    """Set every key of ``dst`` (a CfgNode) that ``src`` also has to ``src``'s value, recursively."""
    for key in dst:
        if key not in src:
            continue
        if hasattr(dst[key], "items") and hasattr(src[key], "items"):
            _copy_known(dst[key], src[key])
        else:
            dst[key] = src[key]


def _get_path(cfg: Any, path: str) -> Any:
    node = cfg
    for name in path.split("."):
        node = node[name]
    return node


def _set_path(cfg: Any, path: str, value: Any) -> None:
    """``cfg.<path> = value``, creating the missing nodes on the way."""
    *parents, leaf = path.split(".")
    node = cfg
    for name in parents:
        if name not in node:
            node[name] = type(cfg)()
        node = node[name]
    node[leaf] = value.clone() if hasattr(value, "clone") else value


def deploy_config(cfg: Any, weights: str) -> Any:
    """The config of the deployable ``Baseline``: fastreid's keys with the run's values (input size, pixel
    statistics, test settings), the registered parts, no ImageNet initialisation, ``MODEL.WEIGHTS`` = ``weights``;
    plus the parts' own keys and (when on) ``TEST.LMP`` when a part is the plugin's."""
    spec = get_fastreid_deployment(cfg.MODEL.META_ARCHITECTURE)
    out = fastreid_default_config()
    _copy_known(out, cfg)
    out.MODEL.META_ARCHITECTURE = "Baseline"
    out.MODEL.WEIGHTS = weights
    out.MODEL.BACKBONE.PRETRAIN = False
    out.MODEL.BACKBONE.PRETRAIN_PATH = ""
    out.MODEL.BACKBONE.NAME = spec.backbone or cfg.MODEL.BACKBONE.NAME
    out.MODEL.HEADS.NAME = spec.head or cfg.MODEL.HEADS.NAME
    out.MODEL.HEADS.NUM_CLASSES = 0  # the identity classifier is not exported: retrieval does not use it
    for key, value in spec.heads.items():
        out.MODEL.HEADS[key] = value
    if spec.backbone:  # the method's ResNet: EmbeddingHead reads its width from FEAT_DIM
        from fastreid_gan.layers.resnet import resnet_out_channels

        out.MODEL.BACKBONE.FEAT_DIM = resnet_out_channels(cfg.MODEL.BACKBONE.DEPTH)
    plugin = plugin_package(out)
    if not plugin and cfg.TEST.LMP.ENABLED:
        raise FastreidExportError(
            f"TEST.LMP.ENABLED is True, but stock fastreid has no local max pooling and the {spec.meta_arch} export "
            f"loads without this project: export with TEST.LMP.ENABLED False, or use --format onnx, or load the "
            f"run's own config.yaml after `import fastreid_gan` (docs/lmp.md)")
    if plugin:  # LMP only when on (off is the plugin's default): stock fastreid then names the missing part
        for path in (*(("TEST.LMP",) if cfg.TEST.LMP.ENABLED else ()), *spec.keep):
            _set_path(out, path, _get_path(cfg, path))
    return out


def deploy_state_dict(model: nn.Module, deploy_model: nn.Module, spec: FastreidDeployment) -> Dict[str, Tensor]:
    """``model``'s weights under ``deploy_model``'s keys; every tensor of ``deploy_model`` must come from ``model``
    at its shape, except the empty ones (the identity classifier of ``NUM_CLASSES 0``), taken as they are."""
    state = rekey_state_dict(model.state_dict(), spec.prefixes)
    wanted = deploy_model.state_dict()
    for key, value in wanted.items():
        if value.numel() == 0:
            state[key] = value.detach().cpu().clone()
    missing = [k for k in wanted if k not in state]
    bad = [k for k in wanted if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)]
    if missing or bad:
        what = f"{len(missing)} tensors missing, e.g. {missing[:3]}" if missing else f"shapes differ for {bad[:3]}"
        raise FastreidExportError(
            f"the {spec.meta_arch} checkpoint does not fill the deployable Baseline "
            f"({_parts(deploy_model)}): {what}; export a config whose MODEL.BACKBONE and MODEL.HEADS are "
            f"the ones the run trained with")
    return {k: state[k] for k in wanted}


def _parts(model: nn.Module) -> str:
    return f"{type(model.backbone).__name__} + {type(model.heads).__name__}"


def _header(cfg: Any, plugin: str, meta_arch: str) -> str:
    lines = [f"# fastreid Baseline config of a {meta_arch} model's test-time network, written by fastreid-gan "
             f"(tools/export.py --format fastreid)."]
    if plugin:
        lines.append(f"# NEEDS THE PLUGIN: `import {plugin}` (or `import fastreid_gan`) before fastreid's get_cfg(): "
                     f"it registers {cfg.MODEL.BACKBONE.NAME} / {cfg.MODEL.HEADS.NAME}.")
    else:
        lines.append("# Stock fastreid loads it (nothing of fastreid-gan is needed):")
    lines.append("#   cfg = fastreid.config.get_cfg(); cfg.merge_from_file('config.yaml'); "
                 "features = fastreid.engine.DefaultPredictor(cfg)(images)  # (B, 3, H, W) RGB 0..255")
    lines.append(f"# MODEL.WEIGHTS is {cfg.MODEL.WEIGHTS}: set it again if the files move.")
    return "\n".join(lines) + "\n"


def _relative_error(actual: Tensor, expected: Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def load_deploy_config(config_path: str, device: str = "") -> Any:
    """The written ``config.yaml`` read as a deployment reads it after ``import fastreid_gan`` (``get_cfg()`` +
    ``merge_from_file``); ``device`` overrides ``MODEL.DEVICE``."""
    from fastreid_gan.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(config_path)
    if device:
        cfg.MODEL.DEVICE = device
    return cfg


def _check(model: nn.Module, config_path: str, spec: FastreidDeployment) -> None:
    """``DefaultPredictor`` on the written files gives ``model``'s eval features (two random images)."""
    from fastreid.engine.defaults import DefaultPredictor

    cfg = load_deploy_config(config_path, str(next(model.parameters()).device))
    predictor = DefaultPredictor(cfg)
    height, width = (int(v) for v in cfg.INPUT.SIZE_TEST)
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        expected = model(images.clone()).cpu()
    actual = predictor(images.clone())
    same_shape = tuple(actual.shape) == tuple(expected.shape)
    error = _relative_error(actual, expected) if same_shape else float("nan")
    if not same_shape or error > CHECK_TOLERANCE:
        raise FastreidExportError(
            f"the exported Baseline ({cfg.MODEL.BACKBONE.NAME} + {cfg.MODEL.HEADS.NAME}) does not reproduce the "
            f"{spec.meta_arch} features: shape {tuple(actual.shape)} vs {tuple(expected.shape)}, max relative "
            f"error {error:.2e}; please report it with the config")


def export_fastreid(cfg: Any, output_dir: str, check: bool = True) -> List[str]:
    """Write ``model_final.pth`` and ``config.yaml`` for fastreid's ``Baseline`` into ``output_dir``.

    ``cfg``: the merged project config with ``MODEL.WEIGHTS`` set (a run's checkpoint or a converted one).
    ``check``: build ``DefaultPredictor`` from the written files and compare its features with the method's eval
    forward on two images (one more model build).  Returns the written paths (checkpoint, config).

    Raises:
        FastreidExportError: no or a missing ``MODEL.WEIGHTS``, a checkpoint that does not fit the config, a
            meta-architecture without a deployment, ``TEST.LMP`` for a stock export, or a failed check.
    """
    from fastreid.modeling import build_model

    weights = str(cfg.MODEL.WEIGHTS)
    if not weights:
        raise FastreidExportError("MODEL.WEIGHTS is empty: add MODEL.WEIGHTS /path/to/model_final.pth (the run's "
                                  "or a converted checkpoint) to the command")
    if not os.path.isfile(weights):
        raise FastreidExportError(f"MODEL.WEIGHTS = '{weights}': file not found")
    spec = get_fastreid_deployment(cfg.MODEL.META_ARCHITECTURE)
    os.makedirs(output_dir, exist_ok=True)
    checkpoint_path = os.path.abspath(os.path.join(output_dir, CHECKPOINT_NAME))
    config_path = os.path.abspath(os.path.join(output_dir, CONFIG_NAME))
    out_cfg = deploy_config(cfg, checkpoint_path)
    try:
        model = load_model_for_inference(cfg, weights)
    except (ValueError, FileNotFoundError) as exc:  # CheckpointFileError, WeightsMismatchError
        raise FastreidExportError(" ".join(str(exc).split())) from exc
    with open(config_path, "w") as f:
        f.write(_header(out_cfg, plugin_package(out_cfg), spec.meta_arch))
        f.write(out_cfg.dump())
    deploy_model = build_model(load_deploy_config(config_path, "cpu"))
    state = deploy_state_dict(model, deploy_model, spec)
    tmp = f"{checkpoint_path}.{os.getpid()}.tmp"
    torch.save({"model": state, "meta_architecture": "Baseline", "exported_from": spec.meta_arch}, tmp)
    os.replace(tmp, checkpoint_path)
    if check:
        _check(model, config_path, spec)
    return [checkpoint_path, config_path]
