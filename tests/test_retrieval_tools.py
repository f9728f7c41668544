"""tools/extract_features.py and tools/visualize_ranks.py (fastreid_gan.retrieval): features equal the model's eval
forward (both output formats, LMP, flip), dataset labels, atomic writes, unreadable images both ways, another
method's checkpoint refused; ranked-list pictures whose pixels show the marks, junk and distractors, CMC/ROC PNGs,
the evaluator's numbers; one-line CLI errors with exit code 2."""
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastreid_gan  # noqa: F401  (compat fixes and registrations first)
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.data.samples import eval_image_loader
from fastreid_gan.model_loading import inference_config, load_model_for_inference
from fastreid_gan.retrieval import feature_extraction as fx
from fastreid_gan.retrieval.feature_extraction import (ExtractedFeatures, RetrievalInputError, atomic_write,
                                                       extract_features, folder_images, read_features,
                                                       write_features)
from fastreid_gan.retrieval.rank_visualization import (COLORS, DISTRACTOR, FALSE, JUNK, MATCH, QUERY_COLOR,
                                                       roc_points, visualize_ranks)
from tiny_configs import DGNET

pytestmark = pytest.mark.filterwarnings("ignore:Cython .* evaluation")
REPO = Path(__file__).resolve().parents[1]
EXTRACT = runpy.run_path(str(REPO / "tools" / "extract_features.py"), run_name="extract_features_tool")["main"]
VISUALIZE = runpy.run_path(str(REPO / "tools" / "visualize_ranks.py"), run_name="visualize_ranks_tool")["main"]

TINY = "SyntheticMarketTiny"
OPTS = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "16"]
BASELINE = """_BASE_: {repo}/configs/Synthetic/baseline_market.yml
MODEL:
  HEADS:
    NUM_CLASSES: 5
DATASETS:
  NAMES: ("{tiny}",)
  TESTS: ("{tiny}",)
OUTPUT_DIR: {out}
"""


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _write_model(folder: Path, name: str, template: str, seed: int):
    """(config path, checkpoint path) of a model with seeded random weights."""
    config = folder / f"{name}.yml"
    config.write_text(template.format(repo=REPO, tiny=TINY, train=TINY, out=folder / "runs" / name))
    torch.manual_seed(seed)
    model = build_model(inference_config(merge_config(get_cfg(), str(config), OPTS)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    weights = folder / f"{name}.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, str(weights))
    return str(config), str(weights)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {"baseline": _write_model(folder, "baseline", BASELINE, 1), "dgnet": _write_model(folder, "dgnet", DGNET, 2)}


def _cfg_and_model(config, weights, *opts):
    cfg = merge_config(get_cfg(), config, OPTS + ["MODEL.WEIGHTS", weights] + list(opts))
    return cfg, load_model_for_inference(cfg, weights)


def _expected(cfg, model, paths):
    """The model's eval forward on the images as the evaluator's loader reads them, one forward for all."""
    load = eval_image_loader(cfg)
    with torch.no_grad():
        return model({"images": torch.stack([load(p) for p in paths])}).numpy()


def _image_folder(folder: Path, n: int = 5) -> Path:
    """n RGB images (one grayscale) of various sizes under folder/ and folder/sub/."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        size = (40 + 6 * i, 80 + 4 * i)
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        where = folder / "sub" if i % 2 else folder
        if i == 3:
            Image.fromarray(arr[..., 0], "L").save(where / f"img{i}.jpg")
        else:
            Image.fromarray(arr).save(where / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


# ------------------------------------------------------------------------------------------------ extraction
def test_folder_features_equal_the_eval_forward_in_both_formats(models, tmp_path, capsys):
    config, weights = models["baseline"]
    folder = _image_folder(tmp_path / "images")
    args = ["--config-file", config, "--images", str(folder), "--batch-size", "2", "--no-progress"]
    assert EXTRACT(args + ["--output", str(tmp_path / "f.npz")] + OPTS + ["MODEL.WEIGHTS", weights]) == 0
    assert EXTRACT(args + ["--output", str(tmp_path / "out")] + OPTS + ["MODEL.WEIGHTS", weights]) == 0
    assert "5 images of folder" in capsys.readouterr().out

    paths = sorted(str(p) for p in folder.rglob("img*"))
    cfg, model = _cfg_and_model(config, weights)
    expected = _expected(cfg, model, paths)
    with np.load(tmp_path / "f.npz") as z:
        assert list(z["paths"]) == paths and "pids" not in z.files
        np.testing.assert_allclose(z["features"], expected, rtol=1e-5, atol=1e-5)
        assert json.loads(str(z["meta"]))["meta_architecture"] == "Baseline"
    out = tmp_path / "out"
    assert (out / "files.txt").read_text().splitlines() == paths
    np.testing.assert_allclose(np.load(out / "features.npy"), expected, rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in out.iterdir()) == ["features.npy", "files.txt", "meta.json"]
    assert expected.shape == (5, 512)


def test_dataset_split_labels_and_the_lmp_and_flip_features(models, datasets_root, tmp_path):
    config, weights = models["dgnet"]
    out = tmp_path / "gallery.npz"
    assert EXTRACT(["--config-file", config, "--dataset", TINY, "--split", "gallery", "--output", str(out),
                    "--no-progress"] + OPTS + ["MODEL.WEIGHTS", weights, "TEST.LMP.ENABLED", "True",
                                               "TEST.LMP.PARTS", "2"]) == 0
    gallery = DATASET_REGISTRY.get(TINY)(root=str(datasets_root)).gallery
    got = read_features(str(out))
    assert got.paths == [g[0] for g in gallery]
    assert got.pids.tolist() == [g[1] for g in gallery] and got.camids.tolist() == [g[2] for g in gallery]
    assert 0 in got.pids.tolist()  # the distractors are kept, as the evaluator keeps them
    assert got.meta["lmp"] == {"parts": 2, "pool": "max"} and got.meta["split"] == "gallery"
    cfg, model = _cfg_and_model(config, weights, "TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "2")
    np.testing.assert_allclose(got.features[:6], _expected(cfg, model, got.paths[:6]), rtol=1e-5, atol=1e-5)
    assert got.features.shape[1] == 512 * 2

    # TEST.FLIP (LMP off): the mean of the image's and its mirror's feature, as fastreid's inference_on_dataset
    cfg, model = _cfg_and_model(config, weights, "TEST.FLIP.ENABLED", "True")
    flipped = extract_features(model, fx.ImageSet(got.paths[:3]), cfg, progress=False)
    load = eval_image_loader(cfg)
    images = torch.stack([load(p) for p in got.paths[:3]])
    with torch.no_grad():
        mean = ((model(images) + model(images.flip(3))) / 2).numpy()
    np.testing.assert_allclose(flipped.features, mean, rtol=1e-5, atol=1e-5)
    assert flipped.meta["flip"] is True


def test_unreadable_images_are_skipped_and_counted_or_stop_the_run(models, tmp_path, capsys, caplog):
    config, weights = models["baseline"]
    folder = _image_folder(tmp_path / "images", n=3)
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    good = folder / "img0.png"
    (folder / "cut.png").write_bytes(good.read_bytes()[:200])  # truncated: the header reads, the pixels do not
    base = ["--config-file", config, "--images", str(folder), "--no-progress"]
    tail = OPTS + ["MODEL.WEIGHTS", weights]

    assert EXTRACT(base + ["--output", str(tmp_path / "skip.npz")] + tail) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("3 images of folder") and "2 unreadable skipped" in summary
    got = read_features(str(tmp_path / "skip.npz"))
    assert len(got) == 3 and not any(p.endswith(("broken.jpg", "cut.png")) for p in got.paths)
    assert sorted(Path(p).name for p in got.meta["skipped"]) == ["broken.jpg", "cut.png"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("broken.jpg" in w for w in warned) and any("cut.png" in w for w in warned)

    capsys.readouterr()
    out = tmp_path / "error.npz"
    assert EXTRACT(base + ["--on-bad-image", "error", "--output", str(out)] + tail) == 2
    _one_error_line(capsys, "cannot read image", "broken.jpg", "--on-bad-image skip")
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


def test_the_summary_counts_the_skipped_images(models, tmp_path, capsys):
    config, weights = models["baseline"]
    folder = _image_folder(tmp_path / "images", n=2)
    (folder / "broken.jpg").write_bytes(b"")
    assert EXTRACT(["--config-file", config, "--images", str(folder), "--no-progress", "--output",
                    str(tmp_path / "o.npz")] + OPTS + ["MODEL.WEIGHTS", weights]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("2 images of folder") and "1 unreadable skipped" in line


def test_writes_are_whole_or_absent(tmp_path, monkeypatch):
    target = tmp_path / "f.npz"
    target.write_bytes(b"previous run")

    def failing(f):
        f.write(b"half of it")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"previous run" and sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]

    result = ExtractedFeatures(np.ones((2, 3), np.float32), ["a.jpg", "b.jpg"], np.array([1, 2]), np.array([0, 1]))
    out = tmp_path / "dir"
    write_features(result, str(out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["camids.npy", "features.npy", "files.txt", "meta.json", "pids.npy"]
    calls = []
    real_save = np.save

    def save_then_fail(f, array, **kw):
        calls.append(1)
        if len(calls) == 3:  # the features file, written last
            f.write(b"partial")
            raise OSError("disk full")
        return real_save(f, array, **kw)

    monkeypatch.setattr(fx.np, "save", save_then_fail)
    changed = ExtractedFeatures(np.zeros((1, 3), np.float32), ["c.jpg"], np.array([5]), np.array([2]))
    with pytest.raises(OSError, match="disk full"):
        write_features(changed, str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, no temporary left
    with pytest.raises(OSError, match="disk full"):
        calls.clear()
        write_features(changed, str(tmp_path / "new_dir"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "f.npz"]
    monkeypatch.undo()
    # a later run without labels removes the old label files (they would not match its rows)
    write_features(ExtractedFeatures(np.zeros((1, 3), np.float32), ["c.jpg"]), str(out))
    assert sorted(p.name for p in out.iterdir()) == ["features.npy", "files.txt", "meta.json"]


def test_a_checkpoint_of_another_method_is_refused(models, tmp_path, capsys):
    config, _ = models["dgnet"]
    _, baseline_weights = models["baseline"]
    folder = _image_folder(tmp_path / "images", n=1)
    out = tmp_path / "f.npz"
    assert EXTRACT(["--config-file", config, "--images", str(folder), "--output", str(out), "--no-progress"]
                   + OPTS + ["MODEL.WEIGHTS", baseline_weights]) == 2
    _one_error_line(capsys, "Baseline checkpoint", "DGNet")
    assert not out.exists()


def test_lmp_stripes_above_the_maps_height_are_one_line(models, tmp_path, capsys):
    config, weights = models["baseline"]
    folder = _image_folder(tmp_path / "images", n=1)
    assert EXTRACT(["--config-file", config, "--images", str(folder), "--output", str(tmp_path / "f.npz"),
                    "--no-progress"] + OPTS + ["MODEL.WEIGHTS", weights, "TEST.LMP.ENABLED", "True",
                                               "TEST.LMP.PARTS", "8"]) == 2
    _one_error_line(capsys, "TEST.LMP.PARTS", "4 rows")
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.parametrize("extra, needles", [
    ([], ["one of the arguments --images --dataset is required"]),
    (["--dataset", "NoSuchSet"], ["'NoSuchSet' is not a registered dataset", TINY]),
    (["--images", "IMAGES", "--split", "gallery"], ["--split needs --dataset"]),
    (["--dataset", TINY, "--split", "val"], ["invalid choice: 'val'"]),
    (["--images", "IMAGES", "--on-bad-image", "ignore"], ["invalid choice: 'ignore'"]),
    (["--images", "IMAGES", "NO.SUCH_KEY", "1"], ["NO.SUCH_KEY"]),
    (["--images", "IMAGES", "MODEL.WEIGHTS", ""], ["no weights: add MODEL.WEIGHTS"]),
    (["--images", "IMAGES", "MODEL.WEIGHTS", "missing.pth"], ["missing.pth", "not found"]),
    (["--images", "EMPTY"], ["no image files"]),
])
def test_extract_cli_errors_are_one_line_with_exit_code_2(models, tmp_path, capsys, extra, needles):
    config, _ = models["baseline"]
    (tmp_path / "empty").mkdir()
    _image_folder(tmp_path / "images", n=1)
    extra = [{"IMAGES": str(tmp_path / "images"), "EMPTY": str(tmp_path / "empty")}.get(a, a) for a in extra]
    opts = [] if "MODEL.WEIGHTS" in extra else ["MODEL.WEIGHTS", ""]
    assert _exit_code(EXTRACT, ["--config-file", config, "--output", str(tmp_path / "o.npz")] + extra + opts) == 2
    _one_error_line(capsys, *needles)
    assert not (tmp_path / "o.npz").exists()


def _exit_code(main, argv):
    """A tool's exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# ------------------------------------------------------------------------------------------------ pictures
ANGLES = {  # gallery: (pid, camid, angle in degrees); query 0: pid 1, cam 0, at 0; query 1: pid 2, cam 1, at 44
    "A": (1, 1, 10), "B": (1, 0, 20), "C": (0, 2, 30), "D": (2, 0, 40), "E": (1, 2, 50), "F": (3, 1, 120)}
SOURCE_COLORS = {"A": (200, 40, 40), "B": (40, 200, 40), "C": (40, 40, 200), "D": (200, 200, 40),
                 "E": (200, 40, 200), "F": (40, 200, 200), "q0": (90, 60, 30), "q1": (30, 60, 90)}


def _unit(deg):
    r = np.deg2rad(deg)
    return [np.cos(r), np.sin(r)]


@pytest.fixture()
def toy_features(tmp_path):
    """Query and gallery features at known angles (cosine distances known), each image one solid colour."""
    def image(name):
        path = tmp_path / "img" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (32, 64), SOURCE_COLORS[name]).save(path)
        return str(path)

    gallery = ExtractedFeatures(np.array([_unit(a) for _, _, a in ANGLES.values()], np.float32),
                                [image(k) for k in ANGLES], np.array([v[0] for v in ANGLES.values()]),
                                np.array([v[1] for v in ANGLES.values()]))
    query = ExtractedFeatures(np.array([_unit(0), _unit(44)], np.float32), [image("q0"), image("q1")],
                              np.array([1, 2]), np.array([0, 1]))
    return query, gallery


def _roc_cfg():
    cfg = get_cfg()
    cfg.TEST.ROC.ENABLED = True
    return cfg


def test_the_picture_marks_matches_false_matches_distractors_and_junk(toy_features, tmp_path):
    query, gallery = toy_features
    result = visualize_ranks(query, gallery, _roc_cfg(), str(tmp_path / "out"), num_queries=2, topk=4,
                             image_size=(64, 32))
    row = result.rows[0]
    # q0's list: A (match, #1), B (same camera: junk, unranked), C (pid 0: distractor, #2), D (#3), E (match, #4)
    assert [(e.kind, e.rank) for e in row.entries] == [(MATCH, 1), (JUNK, None), (DISTRACTOR, 2), (FALSE, 3),
                                                       (MATCH, 4)]
    assert row.ap == pytest.approx((1 + 2 / 4) / 2)
    assert result.rows[1].ap == 1.0 and result.evaluation.metrics["mAP"] == pytest.approx(87.5)

    picture = np.asarray(Image.open(result.files["ranks"]).convert("RGB"))
    assert picture.shape[:2] == result.layout.size[::-1]
    layout = result.layout
    assert [layout.kinds[(0, c)] for c in range(6)] == ["query", MATCH, JUNK, DISTRACTOR, FALSE, MATCH]
    expected_border = [QUERY_COLOR, COLORS[MATCH], COLORS[JUNK], COLORS[DISTRACTOR], COLORS[FALSE], COLORS[MATCH]]
    for c, color in enumerate(expected_border):
        x0, y0, x1, y1 = layout.cells[(0, c)]
        for x, y in ((x0 + 1, y0 + 1), (x1 - 2, y1 - 2), ((x0 + x1) // 2, y0 + 1)):  # corners and top edge
            assert tuple(picture[y, x]) == color, (c, x, y)
    # and the colours are what the legend says: blue, green, grey, orange, red
    is_color = {"blue": lambda r, g, b: b > 180 and r < 100 and g < 150,
                "green": lambda r, g, b: g > 120 > r and b < 60,
                "grey": lambda r, g, b: r == g == b and 80 < r < 220,
                "orange": lambda r, g, b: r > 200 and 90 < g < 200 and b < 60,
                "red": lambda r, g, b: r > 180 and g < 60 and b < 60}
    for c, name in enumerate(["blue", "green", "grey", "orange", "red", "green"]):
        x0, y0 = layout.cells[(0, c)][:2]
        assert is_color[name](*(int(v) for v in picture[y0 + 1, x0 + 1])), (c, name)
    centre = lambda c: tuple(picture[(layout.cells[(0, c)][1] + layout.cells[(0, c)][3]) // 2,  # noqa: E731
                                     (layout.cells[(0, c)][0] + layout.cells[(0, c)][2]) // 2])
    assert centre(0) == SOURCE_COLORS["q0"] and centre(1) == SOURCE_COLORS["A"]
    assert centre(3) == SOURCE_COLORS["C"] and centre(5) == SOURCE_COLORS["E"]
    r, g, b = centre(2)  # junk: its green image is drawn grey and faded
    assert r == g == b and r > 100
    # the second row starts with q1's match D
    assert layout.kinds[(1, 1)] == MATCH and tuple(picture[layout.cells[(1, 1)][1] + 1,
                                                           layout.cells[(1, 1)][0] + 1]) == COLORS[MATCH]

    listed = json.loads(result.files["json"].read_text())
    assert [e["kind"] for e in listed["rows"][0]["entries"]] == [MATCH, JUNK, DISTRACTOR, FALSE, MATCH]
    assert listed["rows"][0]["entries"][1]["path"].endswith("B.png")
    for name in ("cmc", "roc"):
        with Image.open(result.files[name]) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_roc_points_follow_fastreids_convention(toy_features):
    from fastreid_gan.evaluation.distance import FeatureDistance

    query, gallery = toy_features
    provider = FeatureDistance(query.features, gallery.features, "cosine")
    cos = lambda deg: 1 - np.cos(np.deg2rad(deg))  # noqa: E731
    positives = np.array([cos(10), cos(50), cos(4)])  # q0-A, q0-E, q1-D (q0-B: same camera, left out)
    fpr, tpr = roc_points(provider, query.pids, gallery.pids, positives)
    np.testing.assert_allclose(fpr, [1, 2 / 3, 1 / 3])
    # at t = d(q0, E): other-identity pairs at distance >= t: q0-F (120 deg) and q1-F (76 deg) of 8
    assert tpr[-1] == pytest.approx(2 / 8) and np.all(np.diff(tpr) <= 0)


def test_visualize_cli_on_the_tiny_dataset_has_the_evaluators_numbers(models, datasets_root, tmp_path, capsys):
    from fastreid_gan.runner import evaluate_only

    config, weights = models["baseline"]
    tail = OPTS + ["MODEL.WEIGHTS", weights, "TEST.ROC.ENABLED", "True"]
    out = tmp_path / "ranks"
    assert VISUALIZE(["--config-file", config, "--num-queries", "3", "--topk", "5", "--select", "worst",
                      "--output", str(out), "--no-progress"] + tail) == 0
    printed = capsys.readouterr().out
    assert str(out / "ranks.png") in printed and str(out / "roc.png") in printed
    listed = json.loads((out / "ranks.json").read_text())
    cfg = merge_config(get_cfg(), config, tail + ["OUTPUT_DIR", str(tmp_path / "eval")])
    direct = evaluate_only(cfg)[TINY]
    for key in ("Rank-1", "Rank-5", "mAP", "mINP", "TPR@FPR=1e-02"):
        assert listed["metrics"][key] == pytest.approx(direct[key], abs=1e-6), key
    aps = [r["ap"] for r in listed["rows"]]
    assert len(aps) == 3 and aps == sorted(aps)  # the lowest AP first
    assert all(sum(e["rank"] is not None for e in r["entries"]) == 5 for r in listed["rows"])

    # the same from extracted features
    for split in ("query", "gallery"):
        assert EXTRACT(["--config-file", config, "--dataset", TINY, "--split", split, "--output",
                        str(tmp_path / f"{split}.npz"), "--no-progress"] + tail) == 0
    out2 = tmp_path / "ranks2"
    assert VISUALIZE(["--query-features", str(tmp_path / "query.npz"), "--gallery-features",
                      str(tmp_path / "gallery.npz"), "--num-queries", "3", "--topk", "5", "--select", "worst",
                      "--output", str(out2), "TEST.ROC.ENABLED", "True"]) == 0
    again = json.loads((out2 / "ranks.json").read_text())
    assert again["rows"] == listed["rows"]
    assert again["metrics"]["mAP"] == pytest.approx(listed["metrics"]["mAP"], abs=1e-6)

    capsys.readouterr()  # the splits swapped: refused
    assert VISUALIZE(["--query-features", str(tmp_path / "gallery.npz"), "--gallery-features",
                      str(tmp_path / "query.npz"), "--output", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "--query-features holds the gallery split", "--split query")


def test_visualize_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    result = ExtractedFeatures(np.ones((2, 3), np.float32), ["a.jpg", "b.jpg"])
    write_features(result, str(tmp_path / "unlabelled.npz"))
    assert VISUALIZE(["--query-features", str(tmp_path / "unlabelled.npz"), "--output", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "give both --query-features and --gallery-features")
    assert VISUALIZE(["--query-features", str(tmp_path / "unlabelled.npz"), "--gallery-features",
                      str(tmp_path / "unlabelled.npz"), "--output", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "no pids/camids", "--dataset NAME")
    assert VISUALIZE(["--query-features", str(tmp_path / "nothing.npz"), "--gallery-features",
                      str(tmp_path / "unlabelled.npz"), "--output", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "nothing.npz: no such file")
    assert VISUALIZE(["--output", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "give --config-file")
    assert _exit_code(VISUALIZE, ["--output", str(tmp_path / "o"), "--topk", "many"]) == 2
    _one_error_line(capsys, "--topk: invalid int value")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("opts", [[], ["TEST.AQE.ENABLED", "True", "TEST.AQE.QE_K", "3"],
                                  ["TEST.RERANK.ENABLED", "True", "TEST.RERANK.K1", "3", "TEST.RERANK.K2", "2"],
                                  ["TEST.METRIC", "euclidean"]])
def test_the_ranking_is_the_evaluators_with_aqe_rerank_and_metric(toy_features, opts):
    from fastreid_gan.evaluation import ReidEvaluator
    from fastreid_gan.retrieval.rank_visualization import evaluate_ranking

    query, gallery = toy_features
    rng = np.random.default_rng(0)  # 16-d features: the toy angles plus noise, so AQE and re-ranking move things
    noisy = [ExtractedFeatures(np.hstack([p.features, rng.normal(0, 0.3, (len(p), 14))]).astype(np.float32),
                               p.paths, p.pids, p.camids) for p in (query, gallery)]
    cfg = merge_config(get_cfg(), None, opts + ["TEST.ROC.ENABLED", "True"])
    evaluator = ReidEvaluator(cfg, len(query))
    for part in noisy:
        evaluator.process({"targets": torch.from_numpy(part.pids), "camids": torch.from_numpy(part.camids)},
                          torch.from_numpy(part.features))
    expected = evaluator.evaluate()
    got = evaluate_ranking(*noisy, cfg).metrics
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_query_selection():
    from fastreid_gan.retrieval.rank_visualization import select_queries

    ap = np.array([0.5, np.nan, 0.2, 0.9, 0.2])
    assert select_queries(ap, 3, "first") == [0, 1, 2]
    assert select_queries(ap, 3, "worst") == [2, 4, 0]  # no-match queries left out; ties in query order
    assert select_queries(ap, 2, "best") == [3, 0]
    picked = select_queries(ap, 3, "random", seed=1)
    assert picked == select_queries(ap, 3, "random", seed=1) == sorted(set(picked)) and len(picked) == 3
    with pytest.raises(RetrievalInputError, match="--select 'top'"):
        select_queries(ap, 3, "top")


def test_bad_options_of_the_picture(toy_features, tmp_path):
    query, gallery = toy_features
    with pytest.raises(RetrievalInputError, match="--topk 0: must be at least 1"):
        visualize_ranks(query, gallery, get_cfg(), str(tmp_path), topk=0)
    with pytest.raises(RetrievalInputError, match="--num-queries 0"):
        visualize_ranks(query, gallery, get_cfg(), str(tmp_path), num_queries=0)
    short = ExtractedFeatures(np.ones((2, 5), np.float32), query.paths, query.pids, query.camids)
    with pytest.raises(RetrievalInputError, match="5-d but gallery features 2-d"):
        visualize_ranks(short, gallery, get_cfg(), str(tmp_path))
    with pytest.raises(RetrievalInputError, match="nowhere: not a folder"):
        folder_images(str(tmp_path / "nowhere"))
