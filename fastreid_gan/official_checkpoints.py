"""Importing the authors' published checkpoints: the registry of each method's converter.

A method registers one converter, usually when its ``<project>.convert`` module (which holds the method's
conversion table) is imported::

    register_converter("dgnet", help=..., add_arguments=fn(parser), run=fn(args) -> state_dict,
                       tag="dgnet-official")

``tools/convert_official.py dgnet --gen ... --output model.pth`` runs it and writes, with :func:`save_converted`,
``{"model": state_dict, "__converted_from__": tag}``, a file fastreid's ``Checkpointer`` (``MODEL.WEIGHTS``)
loads.  Converter modules are found through the entry-point group ``fastreid_gan.converters`` (value: a module
to import), declared in the project's packaging (``pyproject.toml``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Dict, List

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
