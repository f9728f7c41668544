"""Registry and command line of the official-checkpoint converters (``tools/convert_official.py``).

A method registers one converter, usually when its ``<project>.convert`` module is imported::

    register_converter("dgnet", help=..., add_arguments=fn(parser), run=fn(args) -> state_dict,
                       tag="dgnet-official")

``main(["dgnet", "--gen", ..., "--output", "model.pth"])`` runs it and writes
``{"model": state_dict, "__converted_from__": tag}``, a file fastreid's ``Checkpointer`` (``MODEL.WEIGHTS``) loads.
Converter modules are found through the entry-point group ``fastreid_gan.converters`` (value: a module to
import), declared in each project's packaging (``setup.cfg`` here).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = [
    "ConverterSpec",
    "register_converter",
    "get_converter",
    "available_converters",
    "load_converter_modules",
    "save_converted",
    "build_parser",
    "main",
]

ENTRY_POINT_GROUP = "fastreid_gan.converters"


@dataclass(frozen=True)
class ConverterSpec:
    """One registered converter: CLI sub-command ``name``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Dict[str, Tensor]]
    tag: str


_REGISTRY: Dict[str, ConverterSpec] = {}


def register_converter(
    name: str,
    *,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], Dict[str, Tensor]],
    tag: str,
) -> ConverterSpec:
    """Register (or re-register, e.g. on module reload) the converter ``name``."""
    spec = ConverterSpec(name, help, add_arguments, run, tag)
    _REGISTRY[name] = spec
    return spec


def load_converter_modules() -> None:
    """Import every converter module announced in the ``fastreid_gan.converters`` entry-point group."""
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry_point.value)


def get_converter(name: str) -> ConverterSpec:
    """The converter registered as ``name`` (imports converter modules first)."""
    if name not in _REGISTRY:
        load_converter_modules()
    if name not in _REGISTRY:
        raise KeyError(f"no converter named {name!r}; available: {available_converters()}")
    return _REGISTRY[name]


def available_converters() -> List[str]:
    """Names of the registered converters (after importing converter modules)."""
    load_converter_modules()
    return sorted(_REGISTRY)


def save_converted(state_dict: Dict[str, Tensor], output: str, tag: str) -> str:
    """Write ``{"model": state_dict, "__converted_from__": tag}`` to ``output`` (parent dirs created)."""
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    torch.save({"model": dict(state_dict), "__converted_from__": tag}, output)
    return output


def build_parser() -> argparse.ArgumentParser:
    """``convert_official.py <method> ...`` with one sub-command per registered converter."""
    parser = argparse.ArgumentParser(
        prog="convert_official.py",
        description="Convert officially published checkpoints into fastreid-gan checkpoints "
        "(loadable with MODEL.WEIGHTS / fastreid's Checkpointer).",
    )
    sub = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name in available_converters():
        spec = _REGISTRY[name]
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        spec.add_arguments(p)
        p.add_argument("--output", "-o", required=True, help="converted checkpoint to write (.pth)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the process exit code (errors in the inputs give 2 and a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    spec = _REGISTRY[args.method]
    try:
        state_dict = spec.run(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_converted(state_dict, args.output, spec.tag)
    print(f"wrote {args.output}: {len(state_dict)} tensors (converted from {spec.tag})")
    return 0
