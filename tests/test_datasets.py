"""fastreid_gan.data.datasets: synthetic datasets in fastreid's registry (generated on first use), the
missing-dataset errors for Market1501 / DukeMTMC / MSMT17 and the misnamed-file / empty-folder errors."""
import logging
import os
import types

import pytest

import fastreid_gan  # noqa: F401  (fastreid compat first)
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY, DukeMTMC, Market1501, MSMT17
from fastreid.data.datasets.bases import ImageDataset

from fastreid_gan import compat
from fastreid_gan.data import datasets as ds
from fastreid_gan.data.dataset_errors import (EXPECTED_LAYOUTS, DatasetFormatError, DatasetNotFoundError,
                                              EmptyDatasetFolderError, dataset_missing_message)


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
    # the same items stock Market1501 would list (its parsing, our dataset name), and compat's replacement
    stock = compat._ORIGINAL["Market1501.process_dir"](data, data.gallery_dir, is_train=False)
    assert sorted(stock) == sorted(data.gallery) == Market1501.process_dir(data, data.gallery_dir, is_train=False)
    assert sorted(compat._ORIGINAL["Market1501.process_dir"](data, data.train_dir)) == sorted(data.train)
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


# ------------------------------------------------------------------------------- misnamed files and empty folders
_OK = "0002_c1s1_000451_03.jpg"


def _market(root, train=(_OK,), query=(_OK,), gallery=("0002_c2s1_000451_03.jpg",)):
    """A Market-1501 folder of empty files (process_dir reads names only); returns the data folder."""
    base = root / "Market-1501-v15.09.15"
    for folder, names in (("bounding_box_train", train), ("query", query), ("bounding_box_test", gallery)):
        (base / folder).mkdir(parents=True)
        for name in names:
            (base / folder / name).touch()
    return base


@pytest.mark.parametrize("bad,problem", [("foo.jpg", "the file name does not start with <pid>_c<camera>"),
                                         ("c1_0002.jpg", "the file name does not start with <pid>_c<camera>"),
                                         ("0002_c7s1_000451_03.jpg", "camera 7 is outside 1..6"),
                                         ("1502_c1s1_000451_03.jpg", "pid 1502 is outside 0..1501")])
def test_market1501_misnamed_file_names_file_pattern_and_fix(tmp_path, bad, problem):
    base = _market(tmp_path, train=(_OK, bad))
    with pytest.raises(DatasetFormatError) as info:
        Market1501(root=str(tmp_path))
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert f"Market1501: {base / 'bounding_box_train' / bad}: {problem}" in msg
    assert "<pid>_c<camera>s<seq>_<frame>_<n>.jpg, like 0002_c1s1_000451_03.jpg" in msg
    assert "Fix: remove or rename the file" in msg
    # stock fastreid: AttributeError ('NoneType' ... 'groups') or a bare assert
    stock = compat._ORIGINAL["Market1501.process_dir"]
    with pytest.raises(AttributeError if "pid>_c" in problem else AssertionError):
        stock(types.SimpleNamespace(dataset_name="market1501"), str(base / "bounding_box_train"))


def test_market1501_keeps_junk_rule_and_fastreid_names(tmp_path):
    # -1 (junk) is skipped, 0 (background) kept; a short 0001_c1.jpg parses in fastreid too, so it is accepted
    _market(tmp_path, gallery=("-1_c1s1_000000_00.jpg", "0000_c3s1_000000_00.jpg", "0001_c1.jpg"))
    data = Market1501(root=str(tmp_path))
    assert sorted((p, c) for _, p, c in data.gallery) == [(0, 2), (1, 0)]
    assert data.train == [(str(tmp_path / "Market-1501-v15.09.15" / "bounding_box_train" / _OK), "market1501_2",
                           "market1501_0")]


@pytest.mark.parametrize("folder,files,what", [("query", (), "holds no *.jpg images"),
                                               ("bounding_box_test", ("-1_c1s1_000000_00.jpg",),
                                                "holds only junk (pid -1) images (1)")])
def test_market1501_empty_folder_names_it(tmp_path, folder, files, what):
    base = _market(tmp_path, **{"query" if folder == "query" else "gallery": files})
    data = Market1501(root=str(tmp_path))  # train is read here; query and gallery when first used
    with pytest.raises(EmptyDatasetFolderError) as info:
        getattr(data, "query" if folder == "query" else "gallery")
    msg = str(info.value)
    assert isinstance(info.value, DatasetFormatError) and isinstance(info.value, ValueError)
    assert f"Market1501: {base / folder} {what}" in msg
    assert "<pid>_c<camera>s<seq>_<frame>_<n>.jpg" in msg and "Fix: re-extract the dataset" in msg


def test_duke_misnamed_and_empty(tmp_path):
    base = tmp_path / "DukeMTMC-reID"
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (base / folder).mkdir(parents=True)
        (base / folder / "0001_c2_f0046182.jpg").touch()
    (base / "query" / "0001.jpg").touch()
    with pytest.raises(DatasetFormatError) as info:
        DukeMTMC(root=str(tmp_path))
    assert f"DukeMTMC: {base / 'query' / '0001.jpg'}:" in str(info.value)
    assert "<pid>_c<camera>_f<frame>.jpg, like 0001_c2_f0046182.jpg" in str(info.value)
    (base / "query" / "0001.jpg").unlink()
    (base / "bounding_box_train" / "0001_c2_f0046182.jpg").unlink()
    with pytest.raises(EmptyDatasetFolderError, match=f"DukeMTMC: {base / 'bounding_box_train'} holds no"):
        DukeMTMC(root=str(tmp_path))


def test_synthetic_misnamed_and_empty(tiny_root, tmp_path):
    data = DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(tiny_root))
    (tmp_path / "notes.jpg").touch()
    with pytest.raises(DatasetFormatError, match=f"SyntheticMarketTiny: {tmp_path / 'notes.jpg'}: the file name"):
        data.process_dir(str(tmp_path))
    (tmp_path / "notes.jpg").unlink()
    with pytest.raises(EmptyDatasetFolderError) as info:
        data.process_dir(str(tmp_path), is_train=False)
    assert f"{tmp_path} holds no *.jpg images" in str(info.value)
    assert f"Fix: delete {tmp_path.parent}: the synthetic dataset is generated again" in str(info.value)


def test_file_name_fix_is_idempotent():
    before = Market1501.process_dir, DukeMTMC.process_dir
    compat._fix_dataset_file_names()
    assert (Market1501.process_dir, DukeMTMC.process_dir) == before
    assert compat._ORIGINAL["Market1501.process_dir"] is not before[0]
