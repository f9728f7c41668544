"""Build fastreid's Cython rankers (``rank_cy``/``roc_cy``) into a cache directory, for tests and benchmarks.

fastreid's own ``compile_helper`` runs ``make`` inside site-packages and calls ``sys.exit`` on failure; here the
``.pyx`` files are compiled with ``Cython.Build.cythonize`` + setuptools into a private directory and imported from
there, and :func:`patch_fastreid_cython` points ``fastreid.evaluation.rank``/``roc`` at the compiled functions.
Nothing in site-packages is written.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Dict, Optional, Union

logger = logging.getLogger(__name__)

__all__ = ["build_fastreid_cython", "patch_fastreid_cython", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$FASTREID_GAN_CACHE`` or ``~/.cache/fastreid_gan``."""
    return Path(os.environ.get("FASTREID_GAN_CACHE", Path.home() / ".cache" / "fastreid_gan"))


def _source_dir() -> Path:
    import fastreid.evaluation.rank_cylib as cylib

    return Path(cylib.__file__).resolve().parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_fastreid_cython(cache_dir: Optional[Union[str, Path]] = None,
                          modules: tuple = ("rank_cy", "roc_cy")) -> Dict[str, ModuleType]:
    """Compile (once, cached by source/interpreter/numpy version) and import fastreid's Cython rankers.

    Returns ``{"rank_cy": module, ...}``; raises on a compiler/Cython failure (callers decide the fallback).
    """
    import numpy as np

    src = _source_dir()
    key = hashlib.sha1()
    for name in modules:
        key.update((src / f"{name}.pyx").read_bytes())
    key.update(f"{sys.version}|{np.__version__}".encode())
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / f"fastreid_rank_cylib_{key.hexdigest()[:12]}"
    out.mkdir(parents=True, exist_ok=True)

    from importlib.machinery import EXTENSION_SUFFIXES

    def built(name: str) -> Optional[Path]:
        for suffix in EXTENSION_SUFFIXES:
            if (out / f"{name}{suffix}").exists():
                return out / f"{name}{suffix}"
        return None

    missing = [m for m in modules if built(m) is None]
    if missing:
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension

        # Build in a private temp dir and move the .so in, so concurrent builders never see a half-written file.
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            tmp_path = Path(tmp)
            exts = []
            for name in missing:
                shutil.copy(src / f"{name}.pyx", tmp_path / f"{name}.pyx")
                exts.append(Extension(name, [str(tmp_path / f"{name}.pyx")], include_dirs=[np.get_include()]))
            logger.info("compiling fastreid Cython rankers %s into %s", missing, out)
            ext_modules = cythonize(exts, quiet=True, language_level=3, build_dir=str(tmp_path / "c"))
            dist = Distribution({"ext_modules": ext_modules, "script_name": "setup.py"})
            cmd = dist.get_command_obj("build_ext")
            cmd.build_lib = str(tmp_path / "lib")
            cmd.build_temp = str(tmp_path / "tmp")
            cmd.inplace = False
            cmd.ensure_finalized()
            cmd.run()
            for name in missing:
                for so in (tmp_path / "lib").glob(f"{name}*"):
                    os.replace(so, out / so.name)
    return {name: _load(name, built(name)) for name in modules}


def patch_fastreid_cython(mods: Dict[str, ModuleType]) -> None:
    """Make ``fastreid.evaluation.rank.evaluate_rank`` (and ``roc.evaluate_roc``) use the compiled rankers.

    Also registers them as ``fastreid.evaluation.rank_cylib.rank_cy``/``roc_cy`` so fastreid's
    ``ReidEvaluator._compile_dependencies`` finds them and does not try to run ``make``.
    """
    import fastreid.evaluation.rank as rank
    import fastreid.evaluation.rank_cylib as cylib

    if "rank_cy" in mods:
        rank.evaluate_cy = mods["rank_cy"].evaluate_cy
        rank.IS_CYTHON_AVAI = True
        sys.modules["fastreid.evaluation.rank_cylib.rank_cy"] = mods["rank_cy"]
        cylib.rank_cy = mods["rank_cy"]
    if "roc_cy" in mods:
        import fastreid.evaluation.roc as roc

        roc.evaluate_roc_cy = mods["roc_cy"].evaluate_roc_cy
        roc.IS_CYTHON_AVAI = True
        sys.modules["fastreid.evaluation.rank_cylib.roc_cy"] = mods["roc_cy"]
        cylib.roc_cy = mods["roc_cy"]
