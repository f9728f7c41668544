"""fastreid_gan.data.datasets: synthetic datasets in fastreid's registry (generated on first use) and the
missing-dataset errors for Market1501 / DukeMTMC / MSMT17."""
import logging
import os

import pytest

import fastreid_gan  # noqa: F401  (fastreid compat first)
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY, DukeMTMC, Market1501, MSMT17
from fastreid.data.datasets.bases import ImageDataset

from fastreid_gan import compat
from fastreid_gan.data import datasets as ds
from fastreid_gan.data.dataset_errors import EXPECTED_LAYOUTS, DatasetNotFoundError, dataset_missing_message


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.mark.parametrize("name", ["SyntheticMarket", "SyntheticDuke", "SyntheticMarketTiny", "SyntheticDukeTiny",
                                  "SyntheticMarketMedium", "SyntheticDukeMedium"])
def test_registered(name):
    cls = DATASET_REGISTRY.get(name)
    assert issubclass(cls, ImageDataset) and cls.dataset_name.startswith("synthetic_")


def test_generated_on_first_use_and_read_like_market1501(tiny_root, caplog):
    with caplog.at_level(logging.INFO, logger="fastreid_gan.data.synthetic.writer"):
        data = DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(tiny_root))
    assert any("generating preset 'tiny'" in r.getMessage() for r in caplog.records)
    assert data.dataset_dir == os.path.join(str(tiny_root), "synthetic-market-tiny")
    assert sorted(os.listdir(data.dataset_dir)) == [
        "annotations.json", "bounding_box_test", "bounding_box_train", "poses", "query", "synthetic.json"]

    pids = {p for _, p, _ in data.train}
    assert len(pids) == 12 and all(p.startswith("synthetic_market_tiny_") for p in pids)
    assert all(c.startswith("synthetic_market_tiny_") for _, _, c in data.train)
    assert {p for _, p, _ in data.query} <= {p for _, p, _ in data.gallery}
    assert 0 in {p for _, p, _ in data.gallery} and -1 not in {p for _, p, _ in data.gallery}
    assert {c for _, _, c in data.query + data.gallery} <= set(range(6))
    # the same items stock Market1501 would list (its parsing, our dataset name)
    stock = Market1501.process_dir(data, data.gallery_dir, is_train=False)
    assert sorted(stock) == sorted(data.gallery)
    # fastreid relabels the prefixed train ids to 0..N-1
    assert CommDataset(data.train, relabel=True).num_classes == 12

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fastreid_gan.data.synthetic.writer"):
        again = DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(tiny_root), mode="query")
    assert not any("generating" in r.getMessage() for r in caplog.records)
    assert sorted(again.data) == sorted(data.query)


def test_preset_size_and_folder_kwargs(tiny_root):
    duke = ds.SyntheticDuke(root=str(tiny_root), preset="tiny", height=64, width=32, folder="duke-small-imgs")
    assert duke.dataset_dir == os.path.join(str(tiny_root), "duke-small-imgs")
    assert {c for _, _, c in duke.query + duke.gallery} <= set(range(8))
    assert len({p for _, p, _ in duke.train}) == 12
    # asking for other parameters in an existing folder is an error, not silently the old data
    with pytest.raises(ValueError, match="seed=0"):
        ds.SyntheticDuke(root=str(tiny_root), preset="tiny", height=64, width=32, folder="duke-small-imgs", seed=2)


def test_root_defaults_to_fastreid_datasets_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path))
    data = ds.SyntheticDukeTiny(height=64, width=32)
    assert data.dataset_dir == os.path.join(str(tmp_path), "synthetic-duke-tiny")


@pytest.mark.filterwarnings("ignore:The current data structure is deprecated")
def test_market1501_missing_names_path_and_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        Market1501(root=str(tmp_path))
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, RuntimeError)
    assert f"Market-1501 not found at {tmp_path / 'Market-1501-v15.09.15'}" in msg
    assert "Expected: <root>/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/*.jpg" in msg
    assert "FASTREID_DATASETS=<root>" in msg and "SyntheticMarket" in msg
    assert "Missing" not in msg  # fastreid's fallback path <root>/bounding_box_train would only confuse


def test_market1501_partly_present_names_the_missing_folder(tmp_path):
    (tmp_path / "Market-1501-v15.09.15" / "bounding_box_train").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="Missing: .*query"):
        Market1501(root=str(tmp_path))


def test_duke_and_msmt_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        DukeMTMC(root=str(tmp_path))
    assert f"DukeMTMC-reID not found at {tmp_path / 'DukeMTMC-reID'}" in str(info.value)
    assert "bounding_box_train" in str(info.value)
    # fastreid's MSMT17 asserts before checking anything; the wrapper answers first
    with pytest.raises(DatasetNotFoundError) as info:
        MSMT17(root=str(tmp_path))
    assert f"MSMT17 not found at {tmp_path / 'MSMT17_V1'}" in str(info.value)
    assert "list_{train,val,query,gallery}.txt" in str(info.value)


def test_install_is_idempotent_and_layout_table_complete():
    before = ImageDataset.check_before_run, MSMT17.__init__
    compat._fix_dataset_errors()
    compat._fix_dataset_errors()
    assert (ImageDataset.check_before_run, MSMT17.__init__) == before
    for name in ("Market1501", "DukeMTMC", "MSMT17", "SyntheticMarket", "SyntheticDuke", "SyntheticMarketTiny"):
        assert name in EXPECTED_LAYOUTS
    msg = dataset_missing_message("SyntheticDuke", "/x/datasets")
    assert "/x/datasets/synthetic-duke" in msg and "make_synthetic.py --domain duke" in msg
