"""Fixtures shared by the test modules, and what running them on several pytest-xdist workers needs."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _workers() -> int:
    """pytest-xdist workers in this run (1 without xdist)."""
    return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def pytest_configure(config):
    """The xdist controller (it runs no test) compiles fastreid's Cython ranker once before the workers start:
    ``fastreid_gan.compat.build_cython_ranker`` is not safe for two processes compiling into the same cache folder
    at once (one could load the other's half-written .so). Nothing is imported or run when it is built already."""
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return  # a worker, or no xdist
    import importlib.util

    spec = importlib.util.find_spec("fastreid")
    if spec is None or not spec.submodule_search_locations:
        return
    source = Path(list(spec.submodule_search_locations)[0]) / "evaluation" / "rank_cylib" / "rank_cy.pyx"
    if not source.is_file():
        return
    # the same folder as compat._cython_cache_dir() / tag
    tag = hashlib.sha1(source.read_bytes() + sys.version.encode()).hexdigest()[:12]
    root = os.environ.get("FASTREID_GAN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "fastreid_gan"))
    if sorted((Path(root) / "rank_cylib" / tag).glob("rank_cy*.so")):
        return
    subprocess.run([sys.executable, "-c", "import fastreid_gan.compat as c; c.build_cython_ranker()"],
                   capture_output=True, timeout=900)  # a failure is the tests' to report, as without xdist


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that changes torch's thread count does not pass it on to the tests after it on the same worker
    (which ones those are depends on the xdist schedule)."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture()
def cpu_share() -> int:
    """Threads a heavy (full-size) test may use: at most 2, and this worker's share of the CPUs, so that
    xdist workers do not oversubscribe the cores (2 workers on 2 cores: 1 each; OpenMP threads that wait for a
    descheduled sibling can take several times as long)."""
    return max(1, min(2, _cpus() // _workers()))


@pytest.fixture()
def datasets_root(tmp_path_factory, monkeypatch) -> Path:
    """One datasets folder per test session (per xdist worker: synthetic datasets are generated there once), set
    for fastreid."""
    import fastreid.data.build as data_build

    root = tmp_path_factory.getbasetemp() / "datasets"
    root.mkdir(exist_ok=True)
    monkeypatch.setenv("FASTREID_DATASETS", str(root))
    monkeypatch.setattr(data_build, "_root", str(root))  # fastreid reads the variable at import time
    return root
