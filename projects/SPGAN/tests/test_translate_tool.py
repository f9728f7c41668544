"""``projects/SPGAN/tools/translate.py`` with a small random-init SPGAN on the tiny synthetic dataset: the written
dataset (names, counts, the generator's pixels, the manifest), fastreid reading it, the completion marker (an
incomplete or interrupted output is never read as a dataset) and the one-line errors of bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastreid_gan  # noqa: F401
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.data.dataset_errors import DatasetNotFoundError
from fastreid_gan.model_loading import inference_config
from spgan.translate_dataset import (collect_source_images, main, partial_folder, write_translated_dataset)
from spgan.translated_dataset import MANIFEST_FILE, IncompleteTranslationError, TranslatedMarket

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "projects" / "SPGAN" / "configs" / "market2duke.yml"
TOOL = REPO / "projects" / "SPGAN" / "tools" / "translate.py"
SOURCE = "SyntheticMarketTiny"
SIZE = [64, 64]  # the synthetic images are 128x64: the tool resizes them; SiaNet takes nothing under 64x64
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.SPGAN.GENERATOR.NGF", "4", "MODEL.SPGAN.GENERATOR.N_BLOCKS", "1",
         "MODEL.SPGAN.DISCRIMINATOR.NDF", "4", "INPUT.SIZE_TRAIN", str(SIZE), "INPUT.SIZE_TEST", str(SIZE),
         "DATASETS.NAMES", f'("{SOURCE}",)', "DATASETS.TESTS", f'("{SOURCE}",)', "DATALOADER.NUM_WORKERS", "0"]
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@pytest.fixture(scope="module")
def cfg():
    return merge_config(get_cfg(), str(CONFIG), SMALL)


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    m = build_model(inference_config(cfg)).eval()
    with torch.no_grad():  # a random G's tanh output stays near grey: widen it so images differ visibly
        m.gen_st.tail.conv.weight.mul_(5)
        m.gen_ts.tail.conv.weight.mul_(5)
    return m


@pytest.fixture()
def run_dir(cfg, model, tmp_path):
    """A training run's folder as the tool takes it: config.yaml next to model.pth."""
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.yaml").write_text(cfg.dump())
    torch.save({"model": model.state_dict(), "meta_architecture": "SPGAN"}, str(d / "model.pth"))
    return d


def _translate(run_dir, output, *extra):
    return main(["--config-file", str(run_dir / "config.yaml"), "--weights", str(run_dir / "model.pth"),
                 "--output", str(output), *extra])


def _names(folder):
    return sorted(p.name for p in Path(folder).glob("*.jpg"))


def _pixels(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).copy()).permute(2, 0, 1)


def _translate_by_hand(model, path, direction, tmp_path):
    """model.translate of the resized image, through the same JPEG encoding as the tool's files."""
    img = Image.open(path).convert("RGB").resize((SIZE[1], SIZE[0]), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = model.translate(x, direction)[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    jpeg = tmp_path / f"by_hand_{direction}.jpg"
    Image.fromarray(y).save(jpeg, quality=95, subsampling=0)
    return _pixels(jpeg)


def test_writes_the_source_as_a_translated_dataset(datasets_root, run_dir, model, tmp_path, capsys):
    out = tmp_path / "translated"
    assert _translate(run_dir, out) == 0
    assert "wrote" in capsys.readouterr().out
    assert not Path(partial_folder(str(out))).exists()
    source = {s: collect_source_images(SOURCE, [s]) for s in SPLIT_DIRS}
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    for split, folder in SPLIT_DIRS.items():
        assert _names(out / folder) == sorted(im.name for im in source[split]), split  # same names, same count
        assert manifest["splits"][split]["images"] == len(source[split])
    assert manifest["direction"] == "source_to_target" and manifest["image_size"] == SIZE
    assert manifest["weights"] == str((run_dir / "model.pth").resolve()) and manifest["source_dataset"] == SOURCE
    assert manifest["num_cams"] == max(im.camera for ims in source.values() for im in ims)
    # the pixels are G's output on the resized source image (up to JPEG at quality 95), and not F's
    im = source["query"][0]
    written = _pixels(out / "query" / im.name)
    assert tuple(written.shape) == (3, *SIZE)
    expected = _translate_by_hand(model, im.path, "source_to_target", tmp_path)
    other = _translate_by_hand(model, im.path, "target_to_source", tmp_path)
    err = (written - expected).abs().max().item()
    assert err <= 1.0, err  # float rounding of a batch against one image may move a pixel by one level
    assert (written - other).abs().mean().item() > 10


@pytest.mark.filterwarnings("ignore:The current data structure is deprecated")  # stock Market1501 on a bare folder
def test_fastreid_reads_the_translated_dataset(datasets_root, run_dir, cfg, tmp_path, monkeypatch):
    out = tmp_path / "translated"
    assert _translate(run_dir, out) == 0
    monkeypatch.setenv("SPGAN_TRANSLATED_DIR", str(out))
    src = DATASET_REGISTRY.get(SOURCE)(root=str(datasets_root))
    # fastreid's own training-set builder, with the config naming the translated dataset
    from fastreid.data.build import _train_loader_from_config

    train_cfg = merge_config(get_cfg(), str(CONFIG), [*SMALL, "DATASETS.NAMES", '("TranslatedMarket",)'])
    train_set = _train_loader_from_config(train_cfg)["train_set"]
    assert len(train_set) == len(src.train)
    assert len(train_set.pids) == len({p for _, p, _ in src.train})
    assert len(train_set.cams) == len({c for _, _, c in src.train})
    # the project's test loader (the evaluator's), and fastreid's stock Market1501 reader on the folder
    from fastreid_gan.data.build import build_test_loader

    loader, num_query = build_test_loader(train_cfg, "TranslatedMarket")
    assert num_query == len(src.query) and len(loader.dataset) == len(src.query) + len(src.gallery)
    batch = next(iter(loader))
    assert tuple(batch["images"].shape[-2:]) == tuple(SIZE)
    stock = DATASET_REGISTRY.get("Market1501")(root=str(out))
    assert (len(stock.train), len(stock.query), len(stock.gallery)) == (len(src.train), len(src.query),
                                                                        len(src.gallery))
    assert {(p, c) for _, p, c in stock.query} == {(p, c) for _, p, c in src.query}


def test_train_split_and_other_direction(datasets_root, run_dir, model, tmp_path):
    out = tmp_path / "t2s"
    assert _translate(run_dir, out, "--splits", "train", "--direction", "target_to_source", "--batch", "5") == 0
    assert not (out / "query").exists() and len(_names(out / "bounding_box_train")) > 0
    data = TranslatedMarket(folder=str(out))
    assert len(data.train) == len(_names(out / "bounding_box_train"))
    with pytest.raises(IncompleteTranslationError, match="only the translated train split"):
        data.query
    path = collect_source_images(SOURCE, ["train"])[0]
    written = _pixels(out / "bounding_box_train" / path.name)
    assert (written - _translate_by_hand(model, path.path, "target_to_source", tmp_path)).abs().max().item() <= 1.0


def test_an_incomplete_folder_is_refused(datasets_root, run_dir, tmp_path, monkeypatch):
    out = tmp_path / "translated"
    monkeypatch.setenv("SPGAN_TRANSLATED_DIR", str(out))
    with pytest.raises(DatasetNotFoundError, match="translate.py --config-file"):
        TranslatedMarket()
    assert _translate(run_dir, out, "--splits", "train") == 0
    assert len(TranslatedMarket().train) > 0
    (out / MANIFEST_FILE).unlink()
    with pytest.raises(IncompleteTranslationError, match=f"{out}.*no {MANIFEST_FILE}.*translate.py --config-file"):
        TranslatedMarket()


def test_an_exception_leaves_nothing(datasets_root, model, tmp_path):
    out = tmp_path / "translated"
    images = collect_source_images(SOURCE, ["train"])

    def stop(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_translated_dataset(model, images, str(out), batch_size=4, on_batch=stop)
    assert not out.exists() and not Path(partial_folder(str(out))).exists()


def test_a_killed_run_leaves_only_the_partial_folder(datasets_root, run_dir, tmp_path, monkeypatch):
    out = tmp_path / "translated"
    partial = Path(partial_folder(str(out)))
    # the tool itself, run as a script, with each image's write slowed down so that the kill lands mid-run
    script = ("import runpy, sys, time, spgan.translate_dataset as t\n"
              "save = t.save_jpeg\n"
              "t.save_jpeg = lambda a, p: (save(a, p), time.sleep(0.1))\n"
              f"sys.argv = [{str(TOOL)!r}, *sys.argv[1:]]\n"
              f"runpy.run_path({str(TOOL)!r}, run_name='__main__')\n")
    args = ["--config-file", str(run_dir / "config.yaml"), "--weights", str(run_dir / "model.pth"),
            "--output", str(out), "--batch", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(list(partial.glob("bounding_box_train/*.jpg"))) < 4:
            assert proc.poll() is None and time.time() < deadline, "the translation ended before it was killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not out.exists() and partial.is_dir() and not (partial / MANIFEST_FILE).exists()
    with pytest.raises(IncompleteTranslationError, match="no translation.json"):
        TranslatedMarket(folder=str(partial))
    monkeypatch.setenv("SPGAN_TRANSLATED_DIR", str(out))
    with pytest.raises(DatasetNotFoundError):
        TranslatedMarket()
    assert _translate(run_dir, out, "--splits", "train") == 0  # the next run removes the partial folder
    assert not partial.exists() and len(TranslatedMarket().train) == len(collect_source_images(SOURCE, ["train"]))


def _error(capsys, code):
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.filterwarnings("ignore:The current data structure is deprecated")  # the missing Market1501
def test_bad_input_is_one_line_and_exit_code_2(datasets_root, run_dir, cfg, model, tmp_path, capsys):
    out = tmp_path / "translated"
    assert "does not exist" in _error(capsys, _translate(run_dir, out, "--direction", "source2target"))
    assert "--splits 'test'" in _error(capsys, _translate(run_dir, out, "--splits", "test"))
    assert "not a registered dataset" in _error(capsys, _translate(run_dir, out, "--dataset", "NoSuchSet"))
    err = _error(capsys, _translate(run_dir, out, "--dataset", "Market1501"))
    assert "Market-1501 not found" in err
    # weights of another method, and a config of another method
    other = tmp_path / "dgnet.pth"
    torch.save({"model": {"gen_a.enc_content.weight": torch.zeros(3)}, "meta_architecture": "DGNet"}, str(other))
    err = _error(capsys, main(["--config-file", str(run_dir / "config.yaml"), "--weights", str(other),
                               "--output", str(out)]))
    assert "DGNet checkpoint" in err and "SPGAN" in err
    err = _error(capsys, main(["--config-file", str(REPO / "configs" / "Synthetic" / "baseline_market.yml"),
                               "--weights", str(run_dir / "model.pth"), "--output", str(out)]))
    assert "has no translator" in err
    # another size than the weights were trained at: told by the run's config.yaml, or by SiaNet's fc1
    bigger = ["INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]"]
    assert "trained at 64x64" in _error(capsys, _translate(run_dir, out, *bigger))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run_dir / "model.pth", alone / "model.pth")
    err = _error(capsys, main(["--config-file", str(run_dir / "config.yaml"), "--weights", str(alone / "model.pth"),
                               "--output", str(out), *bigger]))
    assert "another image size" in err and "SiaNet fc1 takes 256 inputs, 512" in err
    assert "file not found" in _error(capsys, main(["--config-file", str(run_dir / "config.yaml"), "--weights",
                                                    str(tmp_path / "none.pth"), "--output", str(out)]))
    assert not out.exists()
    # an existing output: a complete one only with --overwrite, a foreign one never
    assert _translate(run_dir, out, "--splits", "train") == 0
    capsys.readouterr()
    assert "--overwrite" in _error(capsys, _translate(run_dir, out, "--splits", "train"))
    assert _translate(run_dir, out, "--overwrite") == 0
    assert json.loads((out / MANIFEST_FILE).read_text())["splits"].keys() == {"train", "query", "gallery"}
    capsys.readouterr()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert "non-empty folder" in _error(capsys, _translate(run_dir, foreign, "--overwrite"))
    assert (foreign / "notes.txt").exists()

