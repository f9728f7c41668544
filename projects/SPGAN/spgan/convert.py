"""SPGAN's and eSPGAN's official checkpoints -> this project's ``SPGAN`` / ``ESPGAN`` state dicts.

Formats (``../shared/reference/spgan_official/RECIPE.md``):

* py-spgan ``train_spgan.py``: ``Epoch_(N).ckpt`` = ``{'epoch', 'Ga', 'Gb', 'Da', 'Db', 'Me', <5 optimizers>}``,
  nets unwrapped (keys ``ls.*``). Domain A is the first dataset (Market in market2duke): ``Gb`` maps A -> B,
  ``Ga`` B -> A, ``Da`` judges A, ``Db`` B.
* eSPGAN ``espgan.py``: ``Epoch_(N).ckpt`` = ``{'epoch', 'Ga', 'Gb', 'Da', 'Db', 'IDE', <5 optimizers>}``, the GANs
  DataParallel (``module.ls.*``), ``IDE`` an unwrapped ``ft_net`` (``model.*``, ``classifier.0.*``); the source IDE
  ``IDE_market.pth`` is a bare ``ft_net`` state dict.
* OpenUnReID ``tools/SPGAN``: ``checkpoint_{G_A,G_B,D_A,D_B,Metric}.pth`` in one folder, each
  ``{'epoch', 'best_mAP', 'state_dict'}`` with DistributedDataParallel's ``module.``; ``G_A`` maps the source
  (first dataset) to the target, ``D_A`` judges the source.

Our keys: ``gen_st.*`` (G, source -> target), ``gen_ts.*`` (F), ``dis_s.*``, ``dis_t.*``, ``sianet.*`` (SPGAN),
``ide.*`` (eSPGAN)::

    <G>.1.0 / .2.0, .3.0 / .<4+j>.<blk>.1.0, .<4+j>.<blk>.3 / .13.0, .14.0 / .16      (<G> ls or G; <blk> ls or layers)
        -> head.conv / down.0-1.conv / res.blocks.j.convs.0.conv, convs.1.conv / up.0-1.conv / tail.conv
    <D>.0 / .2.0, .3.0, .4.0 / .5          (<D> ls or D) -> body.0.conv / body.1-3.conv / head
    <M>.0 / .3.<c>.0, .4.<c>.0 / fc1, fc2  (<M> ls or layers; <c> l or layer) -> stages.0.0.conv / stages.1-2.0.conv
    model.fc.0, model.fc.1 / model.<resnet key> / classifier.0   -> ide.bottleneck.0, .1 / ide.backbone.<key> / ide.classifier

Each discriminator also gets ``padding_variant`` (0 = openunreid, 1 = pyspgan, ``spgan/discriminator.py``): the
converted file reproduces its own implementation when loaded with ``MODEL.WEIGHTS`` alone.
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Callable, Dict, Mapping, Tuple

import torch
from torch import Tensor, nn

from fastreid_gan.checkpoint_io import CheckpointFileError, load_torch_file
from fastreid_gan.official_checkpoints import register_converter

from .discriminator import SPGANDiscriminator
from .feature_learner import IDEFeatureLearner
from .generator import ResnetGenerator

__all__ = ["SPGAN_TAG", "ESPGAN_TAG", "map_generator_key", "map_discriminator_key", "map_metric_key",
           "map_ide_key", "load_pyspgan", "load_openunreid", "load_espgan", "load_ide"]


SPGAN_TAG = "spgan-official"
ESPGAN_TAG = "espgan-official"
OPENUNREID_FILES = {"G_A": "checkpoint_G_A.pth", "G_B": "checkpoint_G_B.pth", "D_A": "checkpoint_D_A.pth",
                    "D_B": "checkpoint_D_B.pth", "Metric": "checkpoint_Metric.pth"}
# (top-level Sequential, inner block) names of each code base, by net kind
_NAMES = {"pyspgan": {"G": ("ls", "ls"), "D": ("ls", ""), "M": ("ls", "l")},
          "openunreid": {"G": ("G", "layers"), "D": ("D", ""), "M": ("layers", "layer")}}
_KIND_WORDS = {"G": "generator", "D": "discriminator", "M": "metric net", "IDE": "IDE (ft_net)"}


# --------------------------------------------------------------------------- key tables
def _generator_layout(state: Mapping[str, Tensor], top: str, block: str) -> Tuple[int, int]:
    """(n_downsampling, n_blocks) of a published generator, read from its residual block indices."""
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(rf"{top}\.(\d+)\.{block}\.", k))})
    if not blocks or blocks != list(range(blocks[0], blocks[0] + len(blocks))):
        raise KeyError(f"no consecutive residual blocks '{top}.<i>.{block}.*' (found indices {blocks})")
    return blocks[0] - 2, len(blocks)


def map_generator_key(key: str, top: str, block: str, n_down: int, n_blocks: int) -> str:
    """Our generator key for a published one (``top``/``block``: ``ls``/``ls`` py-spgan, ``G``/``layers``
    OpenUnReID). Layout: 0 pad, 1 head, 2.. down, then the residual blocks, the transposed convs, a pad, the tail."""
    m = re.match(rf"{top}\.(\d+)\.(.+)$", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        first_res, first_up = 2 + n_down, 2 + n_down + n_blocks
        tail = first_up + n_down + 1
        if i == 1 and rest == "0.weight":
            return "head.conv.weight"
        if 2 <= i < first_res and rest == "0.weight":
            return f"down.{i - 2}.conv.weight"
        if first_res <= i < first_up:
            r = re.match(rf"{block}\.(1\.0\.weight|3\.weight|3\.bias)$", rest)
            if r:
                conv = "convs.0.conv.weight" if r.group(1) == "1.0.weight" else f"convs.1.conv.{r.group(1)[2:]}"
                return f"res.blocks.{i - first_res}.{conv}"
        if first_up <= i < first_up + n_down and rest == "0.weight":
            return f"up.{i - first_up}.conv.weight"
        if i == tail and rest in ("weight", "bias"):
            return f"tail.conv.{rest}"
    raise KeyError(f"{key!r} is not a key of the published SPGAN generator")


def map_discriminator_key(key: str, top: str, n_layers: int) -> str:
    """Our discriminator key for a published one (``top``: ``ls`` py-spgan, ``D`` OpenUnReID)."""
    m = re.match(rf"{top}\.(\d+)\.(.+)$", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i == 0 and rest in ("weight", "bias"):
            return f"body.0.conv.{rest}"
        if 2 <= i <= n_layers + 1 and rest == "0.weight":
            return f"body.{i - 1}.conv.weight"
        if i == n_layers + 2 and rest in ("weight", "bias"):
            return f"head.{rest}"
    raise KeyError(f"{key!r} is not a key of the published SPGAN discriminator")


def map_metric_key(key: str, top: str, block: str) -> str:
    """Our SiaNet key for a published one (``top``/``block``: ``ls``/``l`` py-spgan, ``layers``/``layer``
    OpenUnReID)."""
    if key in ("fc1.weight", "fc2.weight"):
        return key
    m = re.match(rf"{top}\.0\.(weight|bias)$", key)
    if m:
        return f"stages.0.0.conv.{m.group(1)}"
    m = re.match(rf"{top}\.(\d+)\.{block}\.0\.(weight|bias)$", key)
    if m and int(m.group(1)) >= 3:
        return f"stages.{int(m.group(1)) - 2}.0.conv.{m.group(2)}"
    raise KeyError(f"{key!r} is not a key of the published SPGAN metric net")


def map_ide_key(key: str) -> str:
    """Our feature-learner key (without ``ide.``) for a published ``ft_net`` key."""
    m = re.match(r"model\.fc\.([01])\.(.+)$", key)
    if m:
        return f"bottleneck.{m.group(1)}.{m.group(2)}"
    if key.startswith("model.") and not key.startswith("model.fc."):
        return f"backbone.{key[len('model.'):]}"
    m = re.match(r"classifier\.0\.(weight|bias)$", key)
    if m:
        return f"classifier.{m.group(1)}"
    raise KeyError(f"{key!r} is not a key of eSPGAN's published feature learner (ft_net)")


# --------------------------------------------------------------------------- reading the files
def _strip_module(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _kind(state: Mapping[str, Tensor], code: str) -> str:
    """Which published net ``state`` (``module.`` removed) is: "G", "D", "M", "IDE" or "" (none)."""
    keys = list(state)
    if not keys:
        return ""
    (g_top, g_block), (d_top, _), (m_top, _) = (_NAMES[code][k] for k in ("G", "D", "M"))
    if "fc1.weight" in state and any(k.startswith(f"{m_top}.") for k in keys):
        return "M"
    if all(k.startswith(("model.", "classifier.")) for k in keys) and "model.conv1.weight" in state:
        return "IDE"
    if any(re.match(rf"{g_top}\.\d+\.{g_block}\.", k) for k in keys):
        return "G"
    if all(re.match(rf"{d_top}\.\d+\.", k) for k in keys):
        return "D"
    return ""


def _state_of(obj: object, what: str, path: str, option: str) -> Dict[str, Tensor]:
    if not (isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values())):
        raise CheckpointFileError(f"{option} = '{path}': {what} is no state dict of tensors (got "
                                  f"{type(obj).__name__})", path=path, reason="no state dict")
    return _strip_module(obj)


def _refuse_converted(obj: object, path: str, option: str) -> None:
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        raise CheckpointFileError(
            f"{option} = '{path}' is a fastreid-gan checkpoint already (it has a 'model' entry): use it with "
            f"MODEL.WEIGHTS, there is nothing to convert", path=path, reason="already converted")


def _describe(obj: object) -> str:
    if isinstance(obj, Mapping):
        return f"entries {sorted(map(str, obj))[:8]}"
    return f"a {type(obj).__name__}"


def _expect_kind(state: Dict[str, Tensor], kind: str, code: str, what: str, path: str, option: str) -> None:
    found = _kind(state, code)
    if found != kind:
        holds = (f"the weights of a {_KIND_WORDS[found]}" if found else
                 f"no {'py-spgan' if code == 'pyspgan' else 'OpenUnReID'} SPGAN network (keys such as {list(state)[:3]})")
        raise CheckpointFileError(f"{option} = '{path}': {what} holds {holds}, not a {_KIND_WORDS[kind]}'s",
                                  path=path, reason="another network")


def _convert_net(state: Mapping[str, Tensor], mapper: Callable[[str], str], prefix: str, reference: nn.Module,
                 path: str, option: str, what: str, fc_free: Tuple[str, ...] = ()) -> Dict[str, Tensor]:
    """Map every key of ``state`` under ``prefix`` and check the result against ``reference``'s tensors: every
    one present with its shape (``fc_free``: keys whose input size follows the image size)."""
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        try:
            ours = mapper(key)
        except KeyError as exc:
            raise CheckpointFileError(f"{option} = '{path}': {what}: {exc.args[0]}", path=path,
                                      reason="unknown key") from None
        out[ours] = value.detach().clone().float() if value.is_floating_point() else value.clone()
    expected = reference.state_dict()
    missing = [k for k in expected if k not in out and k != "padding_variant" and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointFileError(f"{option} = '{path}': {what} lacks {len(missing)} tensors of the published "
                                  f"network, e.g. {missing[:3]} (a truncated or other file?)", path=path,
                                  reason="missing tensors")
    for key, value in out.items():
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want and not (key in fc_free and value.shape[0] == want[0]):
            raise CheckpointFileError(f"{option} = '{path}': {what}: {key} has shape {tuple(value.shape)}, the "
                                      f"published network's is {want}", path=path, reason="shape")
    for key in expected:
        if key.endswith("num_batches_tracked"):  # saved by torch < 0.4.1 without the counter
            out.setdefault(key, torch.zeros((), dtype=torch.int64))
    if "padding_variant" in expected:
        out["padding_variant"] = expected["padding_variant"].clone()
    return {f"{prefix}.{k}": v for k, v in out.items()}


def _generator(state: Dict[str, Tensor], code: str, prefix: str, path: str, option: str, what: str) -> Dict[str, Tensor]:
    _expect_kind(state, "G", code, what, path, option)
    top, block = _NAMES[code]["G"]
    try:
        n_down, n_blocks = _generator_layout(state, top, block)
    except KeyError as exc:
        raise CheckpointFileError(f"{option} = '{path}': {what}: {exc.args[0]}", path=path, reason="layout") from None
    ngf = int(state[f"{top}.1.0.weight"].shape[0]) if f"{top}.1.0.weight" in state else 64
    reference = ResnetGenerator(3, 3, ngf, n_blocks, n_down, init="default")
    return _convert_net(state, lambda k: map_generator_key(k, top, block, n_down, n_blocks), prefix, reference,
                        path, option, what)


def _discriminator(state: Dict[str, Tensor], code: str, variant: str, prefix: str, path: str, option: str,
                   what: str) -> Dict[str, Tensor]:
    _expect_kind(state, "D", code, what, path, option)
    top = _NAMES[code]["D"][0]
    indices = sorted({int(k.split(".")[1]) for k in state})
    n_layers = indices[-1] - 2
    ndf = int(state[f"{top}.0.weight"].shape[0]) if f"{top}.0.weight" in state else 64
    reference = SPGANDiscriminator.build(ndf, max(n_layers, 1), variant, init="default")
    return _convert_net(state, lambda k: map_discriminator_key(k, top, n_layers), prefix, reference, path, option,
                        what)


def _metric(state: Dict[str, Tensor], code: str, prefix: str, path: str, option: str, what: str) -> Dict[str, Tensor]:
    from .metric_net import SiaNet

    _expect_kind(state, "M", code, what, path, option)
    top, block = _NAMES[code]["M"]
    channels = [int(state[k].shape[0]) for k in sorted(state) if re.match(rf"{top}\.\d+\.({block}\.0\.)?weight$", k)]
    reference = SiaNet((256, 128), channels or (64, 128, 256), int(state["fc1.weight"].shape[0]),
                       int(state["fc2.weight"].shape[0]) if "fc2.weight" in state else 64)
    return _convert_net(state, lambda k: map_metric_key(k, top, block), prefix, reference, path, option, what,
                        fc_free=("fc1.weight",))


def _ide(state: Dict[str, Tensor], path: str, option: str, what: str) -> Dict[str, Tensor]:
    if _kind(state, "pyspgan") != "IDE":
        holds = "a DG-Net appearance encoder (classifier1/classifier2)" if any(
            k.startswith("classifier1.") for k in state) else f"no ft_net (keys such as {list(state)[:3]})"
        raise CheckpointFileError(f"{option} = '{path}': {what} holds {holds}, not eSPGAN's feature learner "
                                  f"(ft_net: model.*, classifier.0.*)", path=path, reason="another network")
    classes = state.get("classifier.0.weight")
    if classes is None:
        raise CheckpointFileError(f"{option} = '{path}': {what} has no classifier.0.weight (not an ft_net)",
                                  path=path, reason="missing tensors")
    bottleneck = int(state["model.fc.0.weight"].shape[0]) if "model.fc.0.weight" in state else 512
    reference = IDEFeatureLearner(int(classes.shape[0]), bottleneck_dim=bottleneck)
    return _convert_net(state, map_ide_key, "ide", reference, path, option, what)


def _roles(source_domain: str) -> Dict[str, str]:
    """py-spgan entry -> our prefix, for source domain "A" (the first dataset) or "B"."""
    if source_domain not in ("A", "B"):
        raise ValueError(f"--source-domain must be A or B, got {source_domain!r}")
    if source_domain == "A":  # Gb: A -> B = source -> target
        return {"Gb": "gen_st", "Ga": "gen_ts", "Da": "dis_s", "Db": "dis_t"}
    return {"Ga": "gen_st", "Gb": "gen_ts", "Db": "dis_s", "Da": "dis_t"}


def _read_epoch_checkpoint(path: str, option: str, wanted: Tuple[str, ...], method: str) -> Mapping[str, object]:
    obj = load_torch_file(path, source=option)
    _refuse_converted(obj, path, option)
    if not isinstance(obj, Mapping):
        raise CheckpointFileError(f"{option} = '{path}' holds {_describe(obj)}, not a {method} checkpoint "
                                  f"(a dict with entries {', '.join(wanted)})", path=path, reason="format")
    if method == "py-spgan" and "IDE" in obj and "Me" not in obj:
        raise CheckpointFileError(f"{option} = '{path}' is an eSPGAN checkpoint (entries Ga, Gb, Da, Db, IDE; no "
                                  f"SiaNet 'Me'): convert it with 'tools/convert_official.py espgan --checkpoint'",
                                  path=path, reason="eSPGAN file")
    if method == "eSPGAN" and "Me" in obj:
        raise CheckpointFileError(f"{option} = '{path}' is a py-spgan SPGAN checkpoint (it has the SiaNet 'Me'): "
                                  f"convert it with 'tools/convert_official.py spgan --pyspgan'", path=path,
                                  reason="SPGAN file")
    missing = [k for k in wanted if k not in obj]
    if missing:
        raise CheckpointFileError(f"{option} = '{path}' is not a {method} Epoch_(N).ckpt: it lacks {missing} "
                                  f"(it holds {_describe(obj)}; expected {', '.join(wanted)} and the optimizers)",
                                  path=path, reason="format")
    return obj


def load_pyspgan(path: str, source_domain: str = "A", option: str = "--pyspgan") -> Dict[str, Tensor]:
    """Our SPGAN state dict from py-spgan's ``Epoch_(N).ckpt`` (``source_domain``: which of its domains A, B is
    the source; A in market2duke). The discriminators get the ``pyspgan`` padding variant."""
    roles = _roles(source_domain)
    obj = _read_epoch_checkpoint(path, option, ("Ga", "Gb", "Da", "Db", "Me"), "py-spgan")
    out: Dict[str, Tensor] = {}
    for entry, prefix in roles.items():
        state = _state_of(obj[entry], f"entry '{entry}'", path, option)
        if entry.startswith("G"):
            out.update(_generator(state, "pyspgan", prefix, path, option, f"entry '{entry}'"))
        else:
            out.update(_discriminator(state, "pyspgan", "pyspgan", prefix, path, option, f"entry '{entry}'"))
    out.update(_metric(_state_of(obj["Me"], "entry 'Me'", path, option), "pyspgan", "sianet", path, option,
                       "entry 'Me'"))
    return out


def load_openunreid(directory: str, option: str = "--openunreid") -> Dict[str, Tensor]:
    """Our SPGAN state dict from OpenUnReID's ``checkpoint_{G_A,G_B,D_A,D_B,Metric}.pth`` in ``directory``.
    The discriminators get the ``openunreid`` padding variant."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{option} = '{directory}': no such folder (the OpenUnReID work_dir holding "
                                f"{', '.join(OPENUNREID_FILES.values())})")
    missing = [f for f in OPENUNREID_FILES.values() if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise FileNotFoundError(f"{option} = '{directory}' lacks {missing}: an OpenUnReID SPGAN work_dir holds "
                                f"{', '.join(OPENUNREID_FILES.values())}")
    roles = {"G_A": ("G", "gen_st"), "G_B": ("G", "gen_ts"), "D_A": ("D", "dis_s"), "D_B": ("D", "dis_t"),
             "Metric": ("M", "sianet")}
    out: Dict[str, Tensor] = {}
    for net, (kind, prefix) in roles.items():
        path = os.path.join(directory, OPENUNREID_FILES[net])
        obj = load_torch_file(path, source=option)
        _refuse_converted(obj, path, option)
        if not (isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)):
            raise CheckpointFileError(f"{option}: '{path}' holds {_describe(obj)}, not an OpenUnReID checkpoint "
                                      f"({{'epoch', 'best_mAP', 'state_dict'}})", path=path, reason="format")
        state = _state_of(obj["state_dict"], "its state_dict", path, option)
        what = f"its state_dict ({net})"
        if kind == "G":
            out.update(_generator(state, "openunreid", prefix, path, option, what))
        elif kind == "D":
            out.update(_discriminator(state, "openunreid", "openunreid", prefix, path, option, what))
        else:
            out.update(_metric(state, "openunreid", prefix, path, option, what))
    return out


def load_espgan(path: str, source_domain: str = "A", option: str = "--checkpoint",
                with_ide: bool = True) -> Dict[str, Tensor]:
    """Our ESPGAN state dict from ``espgan.py``'s ``Epoch_(N).ckpt`` (GANs under DataParallel, the trained IDE
    unwrapped); ``with_ide=False`` leaves the IDE out. The discriminators get the ``pyspgan`` variant (eSPGAN
    builds py-spgan's ``models_spgan.Discriminator``)."""
    obj = _read_epoch_checkpoint(path, option, ("Ga", "Gb", "Da", "Db") + (("IDE",) if with_ide else ()), "eSPGAN")
    out: Dict[str, Tensor] = {}
    for entry, prefix in _roles(source_domain).items():
        state = _state_of(obj[entry], f"entry '{entry}'", path, option)
        if entry.startswith("G"):
            out.update(_generator(state, "pyspgan", prefix, path, option, f"entry '{entry}'"))
        else:
            out.update(_discriminator(state, "pyspgan", "pyspgan", prefix, path, option, f"entry '{entry}'"))
    if with_ide:
        out.update(_ide(_state_of(obj["IDE"], "entry 'IDE'", path, option), path, option, "entry 'IDE'"))
    return out


def load_ide(path: str, option: str = "--ide") -> Dict[str, Tensor]:
    """``ide.*`` from a bare ``ft_net`` state dict (``IDE_market.pth``; ``module.`` or ``{'state_dict'}`` accepted)."""
    obj = load_torch_file(path, source=option)
    _refuse_converted(obj, path, option)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if isinstance(obj, Mapping) and "IDE" in obj and "Ga" in obj:
        raise CheckpointFileError(f"{option} = '{path}' is a whole eSPGAN checkpoint: give it as --checkpoint (its "
                                  f"IDE is converted with it)", path=path, reason="eSPGAN file")
    return _ide(_state_of(obj, "the file", path, option), path, option, "the file")


# --------------------------------------------------------------------------- CLI (tools/convert_official.py)
def _add_spgan_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--pyspgan", metavar="CKPT", help="py-spgan train_spgan.py's 'Epoch_(N).ckpt' (Ga, Gb, Da, Db, "
                                                        "Me): discriminators in the 'pyspgan' padding")
    src.add_argument("--openunreid", metavar="DIR", help="OpenUnReID's work_dir with checkpoint_{G_A,G_B,D_A,D_B,"
                                                         "Metric}.pth: discriminators in the 'openunreid' padding")
    parser.add_argument("--source-domain", choices=("A", "B"), default="A",
                        help="py-spgan: which domain is the source (A: the first dataset, Market in market2duke; "
                             "Gb then maps source -> target)")


def _run_spgan(args: argparse.Namespace) -> Dict[str, Tensor]:
    if args.pyspgan:
        return load_pyspgan(args.pyspgan, args.source_domain)
    return load_openunreid(args.openunreid)


def _add_espgan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="CKPT", default=None,
                        help="espgan.py's 'Epoch_(N).ckpt' (Ga, Gb, Da, Db under DataParallel, IDE)")
    parser.add_argument("--ide", metavar="PTH", default=None,
                        help="a bare ft_net state dict (IDE_market.pth, the source-trained feature learner): the "
                             "feature learner of the output, in place of the checkpoint's; alone: an IDE-only file")
    parser.add_argument("--source-domain", choices=("A", "B"), default="A",
                        help="which domain is the source (A: the first dataset, Market in espgan_m2d)")


def _run_espgan(args: argparse.Namespace) -> Dict[str, Tensor]:
    if not args.checkpoint and not args.ide:
        raise ValueError("espgan: give --checkpoint Epoch_(N).ckpt, --ide IDE.pth, or both")
    out: Dict[str, Tensor] = {}
    if args.checkpoint:
        out.update(load_espgan(args.checkpoint, args.source_domain, with_ide=not args.ide))
    if args.ide:
        out.update(load_ide(args.ide))
    return out


register_converter(
    "spgan",
    help="SPGAN: py-spgan (--pyspgan Epoch_(N).ckpt) or OpenUnReID (--openunreid DIR) -> keys gen_st.*, gen_ts.*, "
         "dis_s.*, dis_t.*, sianet.* for MODEL.META_ARCHITECTURE SPGAN (projects/SPGAN/configs/market2duke.yml); "
         "the discriminators' padding variant travels in the file",
    add_arguments=_add_spgan_arguments,
    run=_run_spgan,
    tag=SPGAN_TAG,
)

register_converter(
    "espgan",
    help="eSPGAN (espgan.py): --checkpoint Epoch_(N).ckpt [--ide IDE.pth] -> keys gen_st.*, gen_ts.*, dis_s.*, "
         "dis_t.*, ide.* for MODEL.META_ARCHITECTURE ESPGAN (projects/SPGAN/configs/espgan_market2duke.yml); an "
         "--ide-only file loads with MODEL.WEIGHTS_KEEP_INIT ['gen_st.', 'gen_ts.', 'dis_s.', 'dis_t.']",
    add_arguments=_add_espgan_arguments,
    run=_run_espgan,
    tag=ESPGAN_TAG,
)
