"""The method-specific parts of the shared entry points under ``tools/``, dispatched by meta-architecture.

``tools/generate.py --config-file CFG --weights W`` builds the config, finds the tool that the config's
``MODEL.META_ARCHITECTURE`` registered under ``"generate"`` and runs it on the loaded model: DG-Net's code
swaps, FD-GAN's pose transfer or SPGAN's translation plug in the same way, from their own projects, without
touching the entry point.  A project registers when its package is imported (``get_cfg()`` imports every
installed project)::

    register_method_tool("generate", "DGNet", help=..., add_arguments=fn(parser), run=fn(args, cfg, model) -> int)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

from torch import nn

__all__ = ["MethodTool", "register_method_tool", "get_method_tool", "methods_with_tool"]


@dataclass(frozen=True)
class MethodTool:
    """One method's implementation of the shared tool ``tool`` (e.g. ``"generate"``)."""

    tool: str
    meta_arch: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Any, nn.Module], int]


_TOOLS: Dict[Tuple[str, str], MethodTool] = {}


def register_method_tool(tool: str, meta_arch: str, *, help: str,
                         add_arguments: Callable[[argparse.ArgumentParser], None],
                         run: Callable[[argparse.Namespace, Any, nn.Module], int]) -> MethodTool:
    """Register (or re-register, e.g. on module reload) ``meta_arch``'s implementation of ``tool``."""
    spec = MethodTool(tool, meta_arch, help, add_arguments, run)
    _TOOLS[(tool, meta_arch)] = spec
    return spec


def methods_with_tool(tool: str) -> List[str]:
    """The meta-architectures that registered ``tool``."""
    return sorted(meta for name, meta in _TOOLS if name == tool)


def get_method_tool(tool: str, meta_arch: str) -> MethodTool:
    """``meta_arch``'s ``tool``; a ``KeyError`` naming the meta-architectures that have one otherwise."""
    if (tool, meta_arch) not in _TOOLS:
        have = methods_with_tool(tool)
        raise KeyError(
            f"MODEL.META_ARCHITECTURE {meta_arch!r} has no '{tool}' tool; the config must be one of a method "
            f"that registers it ({', '.join(have) or 'none installed'})"
        )
    return _TOOLS[(tool, meta_arch)]
