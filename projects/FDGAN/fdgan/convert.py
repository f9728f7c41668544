"""FD-GAN's published checkpoints (yxgeee/FD-GAN, PyTorch 0.3.1) -> this project's ``FDGAN`` state dict.

Published files (``../shared/reference/fdgan_official/RECIPE.md``):

* stage I ``model_best.pth.tar`` = ``{'state_dict': DataParallel(SiameseNet).state_dict()}`` (or a bare state
  dict): E and V, keys ``base_model.base.*`` (torchvision ResNet-50, its unused ``fc.*`` included) and
  ``embed_model.{bn,classifier}.*``;
* stages II/III ``<epoch>_net_{E,G,Di,Dp}.pth``: one bare ``DataParallel`` state dict per net (``module.``
  prefixes); saved by torch 0.3, so without ``num_batches_tracked`` (filled with 0 here, as torch does).

Key mapping (``reid.*`` E + V, ``gen.*`` G, ``dis_id.*`` D_id, ``dis_pose.*`` D_pd)::

    base_model.base.<resnet key>      -> reid.encoder.backbone.<resnet key>   (dis_id. for Di; fc.* dropped)
    embed_model.bn / .classifier      -> reid.head.bn / .classifier            (dis_id.head for Di)
    <G key>                           -> gen.<G key>                           (same layer names)
    model.0 / model.11                -> dis_pose.body.0.conv / dis_pose.head
    model.2,5,8 / model.3,6,9         -> dis_pose.body.1-3.conv / dis_pose.body.1-3.norm
"""
from __future__ import annotations

import argparse
import re
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor

from fastreid_gan.checkpoint_io import CheckpointFileError, load_torch_file
from fastreid_gan.official_checkpoints import register_converter

__all__ = ["TAG", "load_official_net", "map_official_key", "convert_fdgan_official"]

TAG = "fdgan-official"
NETS = ("E", "G", "Di", "Dp")
# what each published file's keys start with (after removing DataParallel's "module.")
_SIGNATURES = {"E": ("base_model.", "embed_model."), "Di": ("base_model.", "embed_model."),
               "G": ("en_", "de_"), "Dp": ("model.",)}
_DP_LAYERS = {"0": "body.0.conv", "2": "body.1.conv", "3": "body.1.norm", "5": "body.2.conv", "6": "body.2.norm",
              "8": "body.3.conv", "9": "body.3.norm", "11": "head"}


def map_official_key(net: str, key: str) -> Optional[str]:
    """Our key for ``key`` of the published ``net`` ("E", "G", "Di", "Dp"); None for a key that is dropped."""
    if net in ("E", "Di"):
        prefix = "reid" if net == "E" else "dis_id"
        if key.startswith("base_model.base.fc."):
            return None  # torchvision's 1000-way classifier: never used
        if key.startswith("base_model.base."):
            return f"{prefix}.encoder.backbone.{key[len('base_model.base.'):]}"
        if key.startswith("embed_model."):
            return f"{prefix}.head.{key[len('embed_model.'):]}"
    elif net == "G" and key.startswith(_SIGNATURES["G"]):
        return f"gen.{key}"
    elif net == "Dp":
        m = re.match(r"model\.(\d+)\.(.+)$", key)
        if m and m.group(1) in _DP_LAYERS:
            return f"dis_pose.{_DP_LAYERS[m.group(1)]}.{m.group(2)}"
    raise KeyError(f"{key!r} is not a key of FD-GAN's published {net} network")


def _looks_like(keys) -> str:
    keys = list(keys)
    for net in ("E", "G", "Dp"):
        if keys and all(k.startswith(_SIGNATURES[net]) for k in keys):
            return net
    return ""


def load_official_net(path: str, net: str) -> Dict[str, Tensor]:
    """The state dict of one published file, ``module.`` removed, checked to be the ``net`` it is given as.

    Raises:
        FileNotFoundError, CheckpointFileError: the file is missing or unreadable, holds no state dict, or is
            another network's (or another method's) file; the message names the file and what it holds.
    """
    option = f"--{net}"
    obj = load_torch_file(path, source=option)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # stage I's model_best.pth.tar
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        raise CheckpointFileError(
            f"{option} = '{path}' is a fastreid-gan checkpoint already (it has a 'model' entry): use it with "
            f"MODEL.WEIGHTS, there is nothing to convert", path=path, reason="already converted")
    if not (isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values())):
        raise CheckpointFileError(f"{option} = '{path}' holds no state dict of tensors (got "
                                  f"{type(obj).__name__}); expected a published FD-GAN file", path=path,
                                  reason="no state dict")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    found = _looks_like(state)
    wanted = "E" if net == "Di" else net
    if found != wanted:
        what = f"the published {found} network" if found else f"no FD-GAN network (keys such as {list(state)[:3]})"
        raise CheckpointFileError(f"{option} = '{path}' holds {what}, not FD-GAN's {net}: check the file given "
                                  f"to each option (E: *_net_E.pth or model_best.pth.tar, G: *_net_G.pth, Di: "
                                  f"*_net_Di.pth, Dp: *_net_Dp.pth)", path=path, reason="another network")
    rows = state.get("embed_model.classifier.weight", torch.empty(0, 0)).shape[0]
    if net == "Di" and rows != 1:
        raise CheckpointFileError(f"--Di = '{path}' has a {rows}-way classifier: it is E's (or stage I's) file, "
                                  f"not D_id's (*_net_Di.pth, a 1-logit head)", path=path, reason="E given as Di")
    if net == "E" and rows != 2:
        raise CheckpointFileError(f"--E = '{path}' has a {rows}-way classifier: it is D_id's file (*_net_Di.pth), "
                                  f"not E's (V has 2 logits)", path=path, reason="Di given as E")
    return state


def convert_fdgan_official(nets: Mapping[str, Mapping[str, Tensor]]) -> Dict[str, Tensor]:
    """Our state dict from published state dicts ``{"E": ..., ["G": ..., "Di": ..., "Dp": ...]}`` (``module.``
    removed); BatchNorm layers without ``num_batches_tracked`` (torch 0.3) get a 0."""
    out: Dict[str, Tensor] = {}
    for net, state in nets.items():
        for key, value in state.items():
            ours = map_official_key(net, key)
            if ours is not None:
                out[ours] = value.detach().clone().float() if value.is_floating_point() else value.clone()
        for key in [k for k in out if k.endswith(".running_var")]:
            counter = key[: -len("running_var")] + "num_batches_tracked"
            out.setdefault(counter, torch.zeros((), dtype=torch.int64))
    return out


# --------------------------------------------------------------------------- CLI (tools/convert_official.py)
def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--E", required=True,
                        help="E + V: stage I model_best.pth.tar (or a bare state dict) or <epoch>_net_E.pth")
    parser.add_argument("--G", default=None, help="generator <epoch>_net_G.pth (stages II/III)")
    parser.add_argument("--Di", default=None, help="identity discriminator <epoch>_net_Di.pth")
    parser.add_argument("--Dp", default=None, help="pose discriminator <epoch>_net_Dp.pth")


def _run(args: argparse.Namespace) -> Dict[str, Tensor]:
    nets = {net: load_official_net(getattr(args, net), net) for net in NETS if getattr(args, net)}
    return convert_fdgan_official(nets)


register_converter(
    "fdgan",
    help="FD-GAN (yxgeee/FD-GAN): E [+ G, Di, Dp] -> keys reid.*, gen.*, dis_id.*, dis_pose.*; an E-only file "
         "loads for evaluation with MODEL.WEIGHTS_KEEP_INIT ['gen.', 'dis_id.', 'dis_pose.']",
    add_arguments=_add_arguments,
    run=_run,
    tag=TAG,
)
