"""Convert the published DG-Net checkpoints (NVlabs/DG-Net) into this project's state dict.

The authors publish three files, each ``torch.save({'a': state_dict})``: ``gen_*.pt`` (``enc_content.*``,
``dec.*``, ``mlp_w1..4.*``, ``mlp_b1..4.*``), ``dis_*.pt`` (``cnns.0..2.*``) and ``id_*.pt`` (torchvision
ResNet-50 under ``model.*``, heads ``classifier1.*`` / ``classifier2.*``). :func:`convert_dgnet_official` maps
them onto a DG-Net meta-architecture whose sub-networks are the attributes ``gen``
(:class:`~dgnet.generator.DGNetGenerator`), ``dis`` (:func:`~dgnet.discriminator.build_dgnet_discriminator`) and
``id`` (:class:`~dgnet.appearance_encoder.AppearanceEncoder`).

Every published key is either mapped by :data:`KEY_MAP` or deliberately dropped (AdaIN ``running_mean/var``:
dummy buffers the published AdaIN never reads; ``model.fc.*``: torchvision's unused 1000-way classifier). Any
other key, a key our modules lack, a missing key or a shape mismatch is a ``ValueError`` naming the key.
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from fastreid_gan.official_checkpoints import register_converter

__all__ = [
    "KEY_MAP",
    "OFFICIAL_PREFIXES",
    "TAG",
    "map_official_key",
    "dropped_keys",
    "build_reference_modules",
    "convert_dgnet_official",
    "load_official_checkpoint",
]

TAG = "dgnet-official"

#: Key prefixes of each published file, for detection and error messages.
OFFICIAL_PREFIXES: Dict[str, Tuple[str, ...]] = {
    "gen": ("enc_content.", "dec.", "mlp_w1.", "mlp_w2.", "mlp_w3.", "mlp_w4.",
            "mlp_b1.", "mlp_b2.", "mlp_b3.", "mlp_b4."),
    "dis": ("cnns.",),
    "id": ("model.", "classifier1.", "classifier2."),
}

_P = r"(weight|bias)"
#: THE mapping: (regex on "<file>:<published key>", replacement template or None = deliberately dropped).
#: First matching row wins; ``\N`` refers to regex groups.
KEY_MAP: Tuple[Tuple[str, Optional[str]], ...] = (
    # ---- gen: structure encoder E_s (Table 6) ----
    (rf"gen:enc_content\.model\.([0-3])\.conv\.{_P}", r"gen.enc_structure.convs.\1.conv.\2"),
    (rf"gen:enc_content\.model\.4\.model\.(\d+)\.model\.([01])\.conv\.{_P}",
     r"gen.enc_structure.res.blocks.\1.convs.\2.conv.\3"),
    (rf"gen:enc_content\.model\.5\.conv1\.conv\.{_P}", r"gen.enc_structure.aspp.conv1x1.conv.\1"),
    (rf"gen:enc_content\.model\.5\.conv6\.([01])\.conv\.{_P}", r"gen.enc_structure.aspp.branches.0.\1.conv.\2"),
    (rf"gen:enc_content\.model\.5\.conv12\.([01])\.conv\.{_P}", r"gen.enc_structure.aspp.branches.1.\1.conv.\2"),
    (rf"gen:enc_content\.model\.5\.conv18\.([01])\.conv\.{_P}", r"gen.enc_structure.aspp.branches.2.\1.conv.\2"),
    (rf"gen:enc_content\.model\.5\.fuse\.conv\.{_P}", r"gen.enc_structure.aspp.fuse.conv.\1"),
    # ---- gen: decoder G (Table 7); dec.model.0 is a parameter-free Dropout(p=0) ----
    (r"gen:dec\.model\.1\.model\.\d+\.model\.[01]\.norm\.running_(mean|var)", None),
    (rf"gen:dec\.model\.1\.model\.(\d+)\.model\.([01])\.conv\.{_P}", r"gen.dec.res.blocks.\1.convs.\2.conv.\3"),
    (r"gen:dec\.model\.3\.(norm\.gamma|norm\.beta|conv\.weight|conv\.bias)", r"gen.dec.up.1.\1"),
    (r"gen:dec\.model\.5\.(norm\.gamma|norm\.beta|conv\.weight|conv\.bias)", r"gen.dec.up.3.\1"),
    (rf"gen:dec\.model\.6\.conv\.{_P}", r"gen.dec.out.0.conv.\1"),
    (rf"gen:dec\.model\.7\.conv\.{_P}", r"gen.dec.out.1.conv.\1"),
    (rf"gen:dec\.model\.8\.conv\.{_P}", r"gen.dec.out.2.conv.\1"),
    # ---- gen: AdaIN MLPs; mlp_wK -> scales of code slice K, mlp_bK -> shifts ----
    (rf"gen:mlp_w1\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_scale.0.fcs.\1.\2"),
    (rf"gen:mlp_w2\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_scale.1.fcs.\1.\2"),
    (rf"gen:mlp_w3\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_scale.2.fcs.\1.\2"),
    (rf"gen:mlp_w4\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_scale.3.fcs.\1.\2"),
    (rf"gen:mlp_b1\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_shift.0.fcs.\1.\2"),
    (rf"gen:mlp_b2\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_shift.1.fcs.\1.\2"),
    (rf"gen:mlp_b3\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_shift.2.fcs.\1.\2"),
    (rf"gen:mlp_b4\.model\.(\d+)\.fc\.{_P}", r"gen.dec.mlp_shift.3.fcs.\1.\2"),
    # ---- dis: D (Table 8), one net per scale ----
    (rf"dis:cnns\.(\d+)\.([0-4])\.conv\.{_P}", r"dis.scales.\1.body.\2.conv.\3"),
    (rf"dis:cnns\.(\d+)\.([5-8])\.model\.([01])\.conv\.{_P}", r"dis.scales.\1.body.\2.convs.\3.conv.\4"),
    (rf"dis:cnns\.(\d+)\.9\.{_P}", r"dis.scales.\1.head.\2"),
    # ---- id: E_a (torchvision ResNet-50 -> fastreid ResNet, same names) and the two heads ----
    (rf"id:model\.fc\.{_P}", None),
    (r"id:model\.((?:conv1|bn1|layer[1-4])\..+)", r"id.backbone.\1"),
    (r"id:classifier1\.add_block\.0\.(.+)", r"id.head_prim.fc.\1"),
    (r"id:classifier1\.add_block\.1\.(.+)", r"id.head_prim.bn.\1"),
    (r"id:classifier1\.classifier\.0\.(.+)", r"id.head_prim.classifier.\1"),
    (r"id:classifier2\.add_block\.0\.(.+)", r"id.head_fine.fc.\1"),
    (r"id:classifier2\.add_block\.1\.(.+)", r"id.head_fine.bn.\1"),
    (r"id:classifier2\.classifier\.0\.(.+)", r"id.head_fine.classifier.\1"),
)
_COMPILED = tuple((re.compile(p + r"\Z"), t) for p, t in KEY_MAP)


def map_official_key(net: str, key: str) -> Optional[str]:
    """Our key for published ``key`` of file ``net`` ("gen" / "dis" / "id"); None if deliberately dropped.

    Raises ``ValueError`` for a key no row of :data:`KEY_MAP` matches.
    """
    full = f"{net}:{key}"
    for pattern, template in _COMPILED:
        m = pattern.match(full)
        if m:
            return None if template is None else m.expand(template)
    raise ValueError(f"unexpected key in the published {net} checkpoint: {key!r} (no mapping rule)")


def dropped_keys(net: str, keys: Iterable[str]) -> List[str]:
    """The published keys of ``net`` that the conversion drops on purpose (for reports)."""
    return [k for k in keys if map_official_key(net, k) is None]


def _infer_resnet_depth(id_sd: Mapping[str, Tensor]) -> int:
    """ResNet depth from the published id file's blocks (Bottleneck blocks have ``conv3``)."""
    counts = []
    for layer in range(1, 5):
        idx = {int(m.group(1)) for k in id_sd for m in [re.match(rf"model\.layer{layer}\.(\d+)\.", k)] if m}
        counts.append(max(idx) + 1 if idx else 0)
    bottleneck = any(re.match(r"model\.layer1\.0\.conv3\.", k) for k in id_sd)
    table = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50,
             (True, (3, 4, 23, 3)): 101}
    depth = table.get((bottleneck, tuple(counts)))
    if depth is None:
        raise ValueError(f"published id checkpoint: unrecognised ResNet layout (blocks per stage {counts})")
    return depth


def _infer_num_classes(id_sd: Mapping[str, Tensor]) -> int:
    key = "classifier1.classifier.0.weight"
    if key not in id_sd:
        raise ValueError(f"published id checkpoint lacks {key!r} (expected keys {OFFICIAL_PREFIXES['id']})")
    return int(id_sd[key].shape[0])


def build_reference_modules(num_classes: int, depth: int = 50, with_dis: bool = True,
                            device: str = "meta") -> nn.Module:
    """A container with ``gen`` / ``dis`` / ``id`` in the published configuration (on the meta device by
    default: shapes only, no memory). Its state-dict keys are what :func:`convert_dgnet_official` produces."""
    from .appearance_encoder import AppearanceEncoder
    from .discriminator import build_dgnet_discriminator
    from .generator import DGNetGenerator

    with torch.device(device):
        container = nn.Module()
        container.gen = DGNetGenerator(appearance_dim=(2048 if depth >= 50 else 512) * 4)
        if with_dis:
            container.dis = build_dgnet_discriminator()
        container.id = AppearanceEncoder(num_classes=num_classes, depth=depth, last_stride=1)
    return container


def convert_dgnet_official(
    gen_sd: Mapping[str, Tensor],
    id_sd: Mapping[str, Tensor],
    dis_sd: Optional[Mapping[str, Tensor]] = None,
    *,
    num_classes: Optional[int] = None,
    drop_classifiers: bool = False,
) -> Dict[str, Tensor]:
    """Published gen / id (/ dis) state dicts -> one state dict with ``gen.*``, ``id.*`` (, ``dis.*``) keys.

    Args:
        gen_sd, id_sd, dis_sd: the ``'a'`` entries of the published files (see :func:`load_official_checkpoint`).
        num_classes: if given, must equal the heads' class count in ``id_sd`` (e.g. your dataset's).
        drop_classifiers: leave out the two final ``Linear(512 -> classes)`` (to fine-tune on other identities).
    Returns: a new dict of float32 tensors (integer buffers kept), validated against our modules' keys/shapes.
    """
    found = _infer_num_classes(id_sd)
    if num_classes is not None and num_classes != found:
        raise ValueError(
            f"the published id checkpoint has {found} classes, not {num_classes}; "
            "use drop_classifiers (CLI: --drop-classifiers) to convert without the classifier layers"
        )
    ref = build_reference_modules(found, _infer_resnet_depth(id_sd), with_dis=dis_sd is not None).state_dict()

    out: Dict[str, Tensor] = {}
    sources: Dict[str, str] = {}
    for net, sd in (("gen", gen_sd), ("id", id_sd), ("dis", dis_sd)):
        if sd is None:
            continue
        for key, value in sd.items():
            ours = map_official_key(net, key)
            if ours is None:
                continue
            if ours not in ref:
                raise ValueError(f"published {net} key {key!r} maps to {ours!r}, which our modules do not have")
            if ours in out:
                raise ValueError(f"published {net} keys {sources[ours]!r} and {key!r} both map to {ours!r}")
            expected = ref[ours]
            if tuple(value.shape) != tuple(expected.shape):
                raise ValueError(
                    f"shape mismatch for published {net} key {key!r} -> {ours!r}: "
                    f"{tuple(value.shape)} vs expected {tuple(expected.shape)}"
                )
            value = value.detach().to("cpu")
            out[ours] = value.to(expected.dtype) if value.is_floating_point() else value.clone()
            sources[ours] = key
    missing = [k for k in ref if k not in out]
    if missing:
        raise ValueError(f"the published checkpoints lack {len(missing)} tensors our modules need, e.g. {missing[:5]}")
    if drop_classifiers:
        out = {k: v for k, v in out.items() if not re.match(r"id\.head_(prim|fine)\.classifier\.", k)}
    return out


def _detect_kind(keys: Iterable[str]) -> Optional[str]:
    keys = list(keys)
    for kind, prefixes in OFFICIAL_PREFIXES.items():
        if keys and all(k.startswith(prefixes) for k in keys):
            return kind
    return None


def load_official_checkpoint(path: str, kind: Optional[str] = None) -> Dict[str, Tensor]:
    """Read one published DG-Net file (``torch.save({'a': state_dict})``) and return its state dict.

    ``kind`` ("gen" / "dis" / "id"), if given, checks that the keys have that file's prefixes, so swapped
    arguments give a clear error. A bare state dict and DataParallel ``module.`` prefixes are accepted too.
    """
    expected = "; ".join(f"{k}: {', '.join(p)}" for k, p in OFFICIAL_PREFIXES.items())
    if kind is not None and kind not in OFFICIAL_PREFIXES:
        raise ValueError(f"kind must be one of {sorted(OFFICIAL_PREFIXES)}, got {kind!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DG-Net checkpoint not found: {path!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint of tensors ({type(e).__name__}: {e})") from e
    if isinstance(obj, Mapping) and isinstance(obj.get("a"), Mapping):
        sd = obj["a"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        sd = obj
    else:
        top = list(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(
            f"{path}: expected a published DG-Net file, torch.save({{'a': state_dict}}), got {top!r}. "
            f"Expected key prefixes per file: {expected}"
        )
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: non-tensor entries in the state dict, e.g. {bad[:3]}")
    found = _detect_kind(sd)
    if found is None:
        raise ValueError(
            f"{path}: keys (e.g. {list(sd)[:3]}) do not look like a DG-Net gen, dis or id file. "
            f"Expected key prefixes per file: {expected}"
        )
    if kind is not None and found != kind:
        raise ValueError(
            f"{path} looks like the published {found!r} file, but was given as {kind!r} "
            f"(expected key prefixes {', '.join(OFFICIAL_PREFIXES[kind])})"
        )
    return sd


# --------------------------------------------------------------------------- CLI (tools/convert_official.py)
def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gen", required=True, help="published generator file gen_XXXXXXXX.pt")
    parser.add_argument("--id", required=True, help="published appearance encoder file id_XXXXXXXX.pt")
    parser.add_argument("--dis", default=None, help="published discriminator file dis_XXXXXXXX.pt (optional)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="check that the heads have this many classes (e.g. 751 for Market-1501)")
    parser.add_argument("--drop-classifiers", action="store_true",
                        help="omit the heads' final Linear(512 -> classes) (fine-tuning on other identities)")


def _run(args: argparse.Namespace) -> Dict[str, Tensor]:
    gen = load_official_checkpoint(args.gen, "gen")
    ident = load_official_checkpoint(args.id, "id")
    dis = load_official_checkpoint(args.dis, "dis") if args.dis else None
    return convert_dgnet_official(gen, ident, dis, num_classes=args.num_classes,
                                  drop_classifiers=args.drop_classifiers)


register_converter(
    "dgnet",
    help="DG-Net (NVlabs/DG-Net): gen_*.pt + id_*.pt [+ dis_*.pt] -> keys gen.*, id.*, dis.*",
    add_arguments=_add_arguments,
    run=_run,
    tag=TAG,
)
