"""``spgan.translation_quality`` and ``projects/SPGAN/tools/translation_quality.py``'s ``main``: the Lab conversion
against skimage, the Fréchet distance against its closed forms, the style measure on colour-shifted copies, identity
preservation with a model whose features are the identities (and with a project model on an untranslated copy),
and the one-line errors of bad input. Images are a few dozen 32x16 files written here (no dataset generation)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from spgan.translation_quality import (DomainStatistics, ImageItem, TranslationQualityError, colour_statistics,
                                       domain_colour_statistics, frechet_distance, identity_preservation, main,
                                       pair_translated, resolve_images, rgb_to_lab, style_distance, style_report)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
REID_CONFIG = REPO / "configs" / "Synthetic" / "baseline_market.yml"  # ResNet-18 at 64x32

# skimage.color.rgb2lab (scikit-image 0.26.0) of these sRGB colours, float64 input
LAB_REFERENCE = [
    ((255, 255, 255), (100.0, -0.00245494, 0.00465342)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.24058794, 80.09230823, 67.20275104)),
    ((0, 255, 0), (87.73509949, -86.18302974, 83.17970318)),
    ((0, 0, 255), (32.29567257, 79.18559091, -107.85730021)),
    ((128, 128, 128), (53.58501345, -0.00147265, 0.00279145)),
    ((10, 5, 3), (1.62283758, 1.02932188, 1.21770467)),  # the linear segments of the gamma and of f(t)
    ((200, 150, 100), (65.76006082, 12.75889475, 33.5647366)),
    ((30, 200, 230), (74.37684271, -29.59140933, -26.21456119)),
]
# one colour per identity; rotating the channels (R, G, B) -> (G, B, R) maps each onto another identity's
PALETTE = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200)]
CAMERA_GAIN = {1: 1.0, 2: 0.8, 3: 0.6}  # a camera changes the brightness, not the hue


def _write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8)).save(str(path))


def _person_images(folder: Path, seed: int = 0, size=(32, 16), per_camera: int = 2) -> Path:
    """Market-named PNGs: identity k is PALETTE[k - 1], scaled by its camera's gain, with a little noise."""
    rng = np.random.default_rng(seed)
    for pid, colour in enumerate(PALETTE, start=1):
        for cam, gain in CAMERA_GAIN.items():
            for idx in range(per_camera):
                noise = rng.normal(0, 3, size=(*size, 3))
                _write(folder / f"{pid:04d}_c{cam}s1_{pid * 100 + cam * 10 + idx:06d}_00.png",
                       np.asarray(colour, np.float64) * gain + noise)
    return folder


def _styled_images(folder: Path, base, n: int, seed: int, size=(32, 16), names=None) -> Path:
    """``n`` noisy images around an RGB ``base`` (a domain's look), each with its own brightness."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        name = names[i] if names else f"{i + 1:04d}_c1s1_{i:06d}_00.png"
        pixels = np.asarray(base, np.float64) * rng.uniform(0.7, 1.1) + rng.normal(0, 20, size=(*size, 3))
        _write(folder / name, pixels)
    return folder


def _transform_folder(src: Path, dst: Path, fn) -> Path:
    for path in sorted(src.glob("*.png")):
        _write(dst / path.name, fn(np.asarray(Image.open(path).convert("RGB"), np.float64)))
    return dst


class _PaletteIdentity(nn.Module):
    """A re-id "model" whose feature is exactly the identity: the one-hot of the palette colour whose direction
    is nearest the image's mean colour (cosine, so a camera's gain changes nothing)."""

    def __init__(self) -> None:
        super().__init__()
        palette = torch.tensor(PALETTE, dtype=torch.float32)
        self.register_buffer("palette", palette / palette.norm(dim=1, keepdim=True))

    def forward(self, batched_inputs):
        mean = batched_inputs["images"].float().mean(dim=(2, 3))
        nearest = (mean / mean.norm(dim=1, keepdim=True) @ self.palette.T).argmax(1)
        return nn.functional.one_hot(nearest, len(PALETTE)).float()


# ---------------------------------------------------------------------------------------------- style
def test_lab_matches_skimage_reference_values():
    rgb = torch.tensor([c for c, _ in LAB_REFERENCE], dtype=torch.float32).T.reshape(3, len(LAB_REFERENCE), 1)
    lab = rgb_to_lab(rgb).reshape(3, -1).T
    assert torch.allclose(lab, torch.tensor([v for _, v in LAB_REFERENCE], dtype=torch.float64), atol=1e-4, rtol=0)
    # a batch dimension, and the statistics of a flat image: its Lab colour, no spread
    flat = torch.tensor([200.0, 150.0, 100.0]).view(1, 3, 1, 1).expand(2, 3, 4, 3)
    stats = colour_statistics(flat)
    assert stats.shape == (2, 6)
    assert torch.allclose(stats[:, :3], torch.tensor(LAB_REFERENCE[7][1], dtype=torch.float64), atol=1e-4, rtol=0)
    assert torch.allclose(stats[:, 3:], torch.zeros(2, 3, dtype=torch.float64), atol=1e-9)


def test_lab_matches_skimage_on_a_colour_grid():
    color = pytest.importorskip("skimage.color")
    values = torch.arange(0, 256, 15, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(values, values, values, indexing="ij")).reshape(3, -1, 1)
    expected = color.rgb2lab(grid.permute(1, 2, 0).numpy() / 255.0).transpose(2, 0, 1)
    assert np.abs(rgb_to_lab(grid).numpy() - expected).max() < 1e-4


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(50, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g,
                                                                                  dtype=torch.float64)
    a = DomainStatistics.from_vectors(vectors)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # a shift of the mean alone: |delta|^2
    delta = torch.tensor([3.0, 0, -4.0, 0, 0, 1.0], dtype=torch.float64)
    assert frechet_distance(a, DomainStatistics(a.mean + delta, a.cov, 50)) == pytest.approx(26.0, rel=1e-9)
    # diagonal covariances: |delta|^2 + sum (sigma_a - sigma_b)^2
    sa, sb = torch.tensor([1.0, 2, 3, 4, 5, 6]), torch.tensor([2.0, 2, 1, 4, 7, 6])
    da = DomainStatistics(torch.zeros(6, dtype=torch.float64), torch.diag(sa.double() ** 2), 10)
    db = DomainStatistics(delta, torch.diag(sb.double() ** 2), 10)
    assert frechet_distance(da, db) == pytest.approx(26.0 + float(((sa - sb) ** 2).sum()), rel=1e-9)
    assert frechet_distance(da, db) == pytest.approx(frechet_distance(db, da), rel=1e-9)
    with pytest.raises(TranslationQualityError, match="at least 2"):
        DomainStatistics.from_vectors(vectors[:1])


def test_style_distance_is_zero_for_identical_sets_and_grows_with_a_colour_shift():
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(20, 3, 16, 8, generator=g) * 120 + 60)
    assert style_distance(images, images.clone()) == pytest.approx(0.0, abs=1e-9)
    distances = [style_distance(images, (images + torch.tensor([s, 0.0, -s]).view(1, 3, 1, 1)).clamp(0, 255))
                 for s in (5.0, 15.0, 30.0, 60.0)]
    assert distances[0] > 0 and all(x < y for x, y in zip(distances, distances[1:]))
    # a list of images of different sizes is one domain too; a tensor of another layout is refused
    assert style_distance(list(images[:10]), [im[:, :12] for im in images[10:]]) > 0
    with pytest.raises(TranslationQualityError, match=r"\(N, 3, H, W\)"):
        colour_statistics(images[:, :2])


def test_a_colour_shifted_copy_of_the_source_moves_the_distance(tmp_path):
    target = _styled_images(tmp_path / "target", (150, 130, 110), 24, seed=2)
    source = _styled_images(tmp_path / "source", (70, 90, 140), 24, seed=3)
    same = _transform_folder(source, tmp_path / "same", lambda x: x)
    half_way = (np.array([150, 130, 110]) - (70, 90, 140)) / 2
    towards = _transform_folder(source, tmp_path / "towards", lambda x: x + half_way)
    away = _transform_folder(source, tmp_path / "away", lambda x: x - half_way)
    unchanged = style_report(str(source), str(same), str(target))
    assert unchanged["translated_to_target"] == pytest.approx(unchanged["source_to_target"], rel=1e-9)
    assert unchanged["source_to_translated"] == pytest.approx(0.0, abs=1e-9)
    better = style_report(str(source), str(towards), str(target))
    assert better["translated_to_target"] < 0.5 * better["source_to_target"] and better["relative_change"] < -0.5
    worse = style_report(str(source), str(away), str(target))
    assert worse["translated_to_target"] > worse["source_to_target"] and worse["relative_change"] > 0
    assert set(better["domains"]) == {"source", "translated", "target"}
    # folder, paths, items and tensors agree
    stats = domain_colour_statistics(str(source))
    paths = sorted(str(p) for p in source.glob("*.png"))
    assert torch.equal(domain_colour_statistics(paths).mean, stats.mean)
    assert torch.equal(domain_colour_statistics([ImageItem(p) for p in paths]).cov, stats.cov)
    pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(p), np.float32).copy()).permute(2, 0, 1)
                          for p in paths])
    assert torch.allclose(domain_colour_statistics(pixels).mean, stats.mean, atol=1e-9)


# ---------------------------------------------------------------------------------------------- identity
def test_identity_preservation_with_features_that_are_the_identities(tmp_path):
    source = resolve_images(str(_person_images(tmp_path / "source")))
    assert [(it.pid, it.camera) for it in source[:2]] == [(1, 1), (1, 1)]
    model = _PaletteIdentity()
    copy = _transform_folder(tmp_path / "source", tmp_path / "copy", lambda x: x)
    kept = identity_preservation(model, source, str(copy))
    assert kept["reference"]["Rank-1"] == 100.0 and kept["reference"]["mAP"] == 100.0
    assert kept["translated"] == kept["reference"] and kept["drop"] == {"Rank-1": 0.0, "mAP": 0.0}
    assert kept["queries"] == kept["gallery"] == len(source) == 36
    # a translation that changes the colours but keeps the hue keeps the identity
    tinted = identity_preservation(model, source, str(_transform_folder(tmp_path / "source", tmp_path / "dark",
                                                                        lambda x: x * 0.5)))
    assert tinted["translated"]["Rank-1"] == 100.0
    # one that maps every person's colours onto another person's loses it all
    rotated = _transform_folder(tmp_path / "source", tmp_path / "rotated", lambda x: x[..., [1, 2, 0]])
    lost = identity_preservation(model, source, str(rotated))
    assert lost["reference"]["Rank-1"] == 100.0 and lost["translated"]["Rank-1"] == 0.0
    assert lost["drop"]["Rank-1"] == 100.0 and lost["drop"]["mAP"] > 50
    # the query's own untranslated image is junk (same person, same camera): matching only it is no match
    one_cam = [it for it in source if it.camera == 1]
    with pytest.raises(TranslationQualityError, match="two cameras"):
        identity_preservation(model, one_cam, one_cam)


def test_identity_preservation_with_a_project_model_on_an_untranslated_copy(tmp_path, capsys):
    """The CLI with a random-init ResNet-18 baseline (loaded as --eval-only does): the copy's Rank-1 is the
    reference's; the style table and the JSON are written."""
    from fastreid.modeling import build_model

    from fastreid_gan.config import get_cfg, merge_config
    from fastreid_gan.model_loading import inference_config

    cfg = merge_config(get_cfg(), str(REID_CONFIG), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    weights = tmp_path / "model.pth"
    torch.save({"model": build_model(inference_config(cfg)).state_dict(), "meta_architecture": "Baseline"},
               str(weights))
    source = _person_images(tmp_path / "market" / "bounding_box_train")
    (tmp_path / "market" / "query").mkdir()
    _transform_folder(source, tmp_path / "translated" / "bounding_box_train", lambda x: x)
    target = _styled_images(tmp_path / "target", (150, 130, 110), 12, seed=4)
    out = tmp_path / "quality.json"
    assert main(["--source", str(tmp_path / "market"), "--translated", str(tmp_path / "translated"),
                 "--target", str(target), "--reid-config", str(REID_CONFIG), "--reid-weights", str(weights),
                 "--json", str(out), "MODEL.DEVICE", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "| style: Fréchet distance" in table and "| identity: Rank-1" in table
    result = json.loads(out.read_text())
    identity = result["identity"]
    assert identity["translated"]["Rank-1"] == pytest.approx(identity["reference"]["Rank-1"], abs=1e-9)
    assert identity["translated"]["mAP"] == pytest.approx(identity["reference"]["mAP"], abs=1e-6)
    assert identity["meta_architecture"] == "Baseline" and identity["queries"] == 36
    assert result["style"]["translated_to_target"] == pytest.approx(result["style"]["source_to_target"], rel=1e-9)
    assert result["style"]["size"] == [32, 16]


# ---------------------------------------------------------------------------------------------- bad input
def _error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_input_is_one_line_naming_the_fix(tmp_path, capsys):
    source = _person_images(tmp_path / "source", per_camera=1)
    target = _styled_images(tmp_path / "target", (150, 130, 110), 4, seed=5)
    good = ["--source", str(source), "--translated", str(source), "--target", str(target)]

    assert "no such folder" in _error(capsys, "--source", str(tmp_path / "missing"), *good[2:])
    assert "did you mean SyntheticDukeTiny" in _error(capsys, *good[:4], "--target", "SyntheticDukeTyni")
    (tmp_path / "empty").mkdir()
    assert "holds no images" in _error(capsys, *good[:2], "--translated", str(tmp_path / "empty"), *good[4:])
    # a Market-layout folder without the split asked for
    (tmp_path / "layout" / "query").mkdir(parents=True)
    assert "bounding_box_test/" in _error(capsys, *good[:4], "--target", str(tmp_path / "layout"),
                                          "--target-split", "gallery")

    # translated file names that are not the source's
    renamed = tmp_path / "renamed"
    shutil.copytree(source, renamed)
    first = sorted(renamed.glob("*.png"))[0]
    first.rename(renamed / "9999_c1s1_000000_00.png")
    err = _error(capsys, *good[:2], "--translated", str(renamed), *good[4:])
    assert f"no translated file of the same name (e.g. {first.name})" in err and "9999_c1s1" in err

    # translated images of different sizes (two translations mixed)
    mixed = tmp_path / "mixed"
    shutil.copytree(source, mixed)
    Image.open(sorted(source.glob("*.png"))[1]).resize((32, 64)).save(str(sorted(mixed.glob("*.png"))[1]))
    assert "different sizes (32x16 (17), 64x32 (1))" in _error(capsys, *good[:2], "--translated", str(mixed),
                                                               *good[4:])
    assert main([*good[:2], "--translated", str(mixed), *good[4:], "--size", "32x16"]) == 0  # --size: one size
    capsys.readouterr()

    # the re-id model: both parts or none, existing files
    assert "--reid-config needs --reid-weights" in _error(capsys, *good, "--reid-config", str(REID_CONFIG))
    assert "--reid-weights needs --reid-config" in _error(capsys, *good, "--reid-weights", str(target))
    assert "file not found" in _error(capsys, *good, "--reid-config", str(REID_CONFIG), "--reid-weights",
                                      str(tmp_path / "none.pth"))
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("junk\n")
    reid = ["--reid-config", str(REID_CONFIG), "MODEL.DEVICE", "cpu"]
    assert "is not a checkpoint" in _error(capsys, *good, *reid[:2], "--reid-weights", str(tmp_path / "empty.pth"),
                                           *reid[2:])
    assert "is not a checkpoint" in _error(capsys, *good, *reid[:2], "--reid-weights", str(tmp_path / "text.pth"),
                                           *reid[2:])
    assert "--size" in _error(capsys, *good, "--size", "256")

    # the API raises the same errors
    with pytest.raises(TranslationQualityError, match="no translated file of the same name"):
        pair_translated(resolve_images(str(source)), str(renamed))
    with pytest.raises(TranslationQualityError, match="carry no identity"):
        identity_preservation(_PaletteIdentity(), [ImageItem(str(p)) for p in target.glob("*.png")], str(target))
