"""Fixtures shared by the test modules."""
from pathlib import Path

import pytest


@pytest.fixture()
def datasets_root(tmp_path_factory, monkeypatch) -> Path:
    """One datasets folder per test session (synthetic datasets are generated there once), set for fastreid."""
    import fastreid.data.build as data_build

    root = tmp_path_factory.getbasetemp() / "datasets"
    root.mkdir(exist_ok=True)
    monkeypatch.setenv("FASTREID_DATASETS", str(root))
    monkeypatch.setattr(data_build, "_root", str(root))  # fastreid reads the variable at import time
    return root
