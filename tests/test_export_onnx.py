"""ONNX export (tools/export.py --format onnx, fastreid_gan.export): every method's test-time model, without and with
TEST.LMP, run with onnxruntime on real synthetic test images against the torch model that wrote the checkpoint;
the dynamic batch axis; the CLI; the errors (missing weights, unknown format, forwards ONNX cannot express, a
failed check)."""
import runpy
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fastreid_gan  # noqa: F401  (compat fixes and registrations first)
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.export import (ExportError, check_onnx_model, export_model_to_onnx, export_onnx,
                                 max_relative_error, onnx_export, onnx_features, onnx_session,
                                 sample_test_images)
from fastreid_gan.layers import LocalPooling
from fastreid_gan.model_loading import load_model_for_inference

# fastreid_gan.export imports neither: the whole module skips without the extra
pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")
onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")

pytestmark = pytest.mark.filterwarnings("ignore:Cython .* evaluation")
REPO = Path(__file__).resolve().parents[1]
CLI = runpy.run_path(str(REPO / "tools" / "export.py"), run_name="export_tool")["main"]
DATASET = "SyntheticMarketTiny"
CPU = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"]

# (config, extra overrides, feature size at 64x32): every method's synthetic config, ResNet-18 encoders
BASELINE = ("configs/Synthetic/baseline_market.yml", [], 512)            # the head's BN-neck feature
DGNET = ("projects/DGNet/configs/synthetic.yml", [], 1024)               # [f_prim, w f_fine]
FDGAN = ("projects/FDGAN/configs/synthetic.yml", [], 512)                # E's pool feature
IDE = ("projects/SPGAN/configs/ide_synthetic_duke.yml", [], 512)         # SPGAN's IDE+ feature learner (Baseline)
ESPGAN = ("projects/SPGAN/configs/espgan_synthetic.yml", [], 512)        # eSPGAN's feature learner C


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _cfg(config, opts):
    return merge_config(get_cfg(), str(REPO / config), CPU + list(opts))


def _trained_checkpoint(config, path):
    """A random-init model of ``config`` with every parameter and BN statistic moved off its initialisation,
    saved as a checkpoint: the export must load these weights, not rebuild the initialisation."""
    cfg = _cfg(config, [])
    model = load_model_for_inference(cfg, None)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if "running_var" in name:
                tensor.mul_(torch.rand_like(tensor) * 0.5 + 0.75)  # stays positive
            else:
                tensor.add_(torch.randn_like(tensor) * 0.05)
    torch.save({"model": model.state_dict(), "iteration": 0,
                "meta_architecture": cfg.MODEL.META_ARCHITECTURE}, str(path))  # as a training run records it
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """``config -> (weights file, the torch model that wrote it)``, built once per module (TEST.LMP adds no
    weights: one checkpoint serves a config with and without it)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    made = {}

    def get(config):
        if config not in made:
            torch.manual_seed(len(made))
            path = folder / f"{len(made)}_model_final.pth"
            made[config] = (path, _trained_checkpoint(config, path))
        return made[config]

    return get


def _torch_features(trained, images, opts):
    """What the trained model's eval forward gives, with ``TEST.LMP`` computed on it from the pure function
    (the model itself is not switched)."""
    with torch.no_grad():
        if "TEST.LMP.ENABLED" in opts:
            parts = int(opts[opts.index("TEST.LMP.PARTS") + 1])
            return LocalPooling(parts, "max")(trained.reid_feature_map, images).numpy()
        return trained(images).numpy()


def _export_and_compare(tmp_path, checkpoints, config, opts, dim):
    weights, trained = checkpoints(config)
    cfg = _cfg(config, list(opts) + ["MODEL.WEIGHTS", str(weights)])
    images = sample_test_images(cfg, DATASET, 3)
    assert images.shape == (3, 3, 64, 32) and images.max() > 1.0  # real 0..255 test images at INPUT.SIZE_TEST
    out = tmp_path / "model.onnx"
    check = export_onnx(cfg, str(out), images)
    assert check.worst <= 1e-4 and check.feature_dim == dim and check.images == 3
    expected = _torch_features(trained, images, opts)
    assert expected.shape == (3, dim)
    session = onnx_session(str(out))  # batch 3 and batch 1 through the one file: the dynamic axis
    batch, single = onnx_features(session, images), onnx_features(session, images[1:2])
    assert batch.shape == (3, dim) and single.shape == (1, dim)
    assert max_relative_error(batch, expected) <= 1e-4
    assert max_relative_error(single, expected[1:2]) <= 1e-4
    assert not np.allclose(expected[0], expected[1], rtol=1e-3)  # the images give different features
    return batch, onnx.load(str(out))


# ----------------------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("case", [BASELINE, DGNET, FDGAN, IDE, ESPGAN], ids=["baseline", "dgnet", "fdgan",
                                                                            "spgan-ide", "espgan"])
def test_every_method_exports_and_onnxruntime_gives_the_torch_features(tmp_path, datasets_root, checkpoints, case):
    config, opts, dim = case
    _, proto = _export_and_compare(tmp_path, checkpoints, config, opts, dim)
    weights, _ = checkpoints(config)
    graph_input = proto.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "images" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [3, 64, 32]
    assert proto.graph.output[0].name == "features"
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["fastreid_gan.meta_architecture"] == _cfg(config, opts).MODEL.META_ARCHITECTURE
    assert props["fastreid_gan.test_lmp"] == "off" and props["fastreid_gan.weights"] == weights.name


@pytest.mark.parametrize("case,parts", [(BASELINE, 4), (DGNET, 4), (FDGAN, 2)], ids=["baseline", "dgnet", "fdgan"])
def test_lmp_forward_exports_flip_sum_and_normalisation_included(tmp_path, datasets_root, checkpoints, case,
                                                                 parts):
    config, _, _ = case
    opts = ["TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", str(parts)]
    batch, proto = _export_and_compare(tmp_path, checkpoints, config, opts, 512 * parts)  # ResNet-18: C = 512
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)  # L2-normalised inside the graph
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["fastreid_gan.test_lmp"] == f"parts={parts} pool=max"


# ------------------------------------------------------------------------------------------------------- CLI
def _cli(capsys, *argv):
    rc = CLI(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_exports_checks_and_prints_the_error(tmp_path, datasets_root, checkpoints, capsys):
    config = BASELINE[0]
    weights, _ = checkpoints(config)
    out = tmp_path / "deploy" / "baseline.onnx"  # the folder is created
    rc, stdout, err = _cli(capsys, "--config-file", str(REPO / config), "--format", "onnx", "--output", str(out),
                           "--check-dataset", DATASET, "--check-images", "4",
                           *CPU, "MODEL.WEIGHTS", str(weights))
    assert rc == 0, err
    assert "onnxruntime vs torch on 4 SyntheticMarketTiny test images: max relative error" in stdout
    assert f"wrote {out}: Baseline, input 'images' float32 (batch, 3, 64, 32)" in stdout
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["baseline.onnx"]  # no temporary left


def test_cli_fails_when_the_check_exceeds_the_tolerance_and_writes_nothing(tmp_path, datasets_root, checkpoints,
                                                                          capsys, monkeypatch):
    config = BASELINE[0]
    weights, _ = checkpoints(config)

    def off_by_a_lot(model, path, images):
        check = check_onnx_model(model, path, images)
        return type(check)(path=check.path, images=check.images, feature_dim=check.feature_dim,
                           max_rel_error=3e-3, max_rel_error_single=check.max_rel_error_single)

    monkeypatch.setattr(onnx_export, "check_onnx_model", off_by_a_lot)
    out = tmp_path / "baseline.onnx"
    rc, _, err = _cli(capsys, "--config-file", str(REPO / config), "--format", "onnx", "--output", str(out),
                      "--check-dataset", DATASET, "--check-images", "2", *CPU, "MODEL.WEIGHTS", str(weights))
    assert rc == 2 and err.count("\n") == 1
    assert "max relative error of 0.003 (batch of 2: 0.003" in err and "above 0.0001" in err
    assert list(tmp_path.glob("*.onnx*")) == []


def test_cli_dispatches_fastreid_format(tmp_path, capsys, monkeypatch):
    calls = []

    def export_fastreid(cfg, output_dir):
        calls.append((cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.WEIGHTS, output_dir))
        return [str(Path(output_dir) / "model_final.pth"), str(Path(output_dir) / "config.yaml")]

    fake = types.ModuleType("fastreid_gan.export.fastreid_format")
    fake.export_fastreid = export_fastreid
    monkeypatch.setitem(sys.modules, "fastreid_gan.export.fastreid_format", fake)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")  # only its existence is checked before the dispatch
    rc, stdout, err = _cli(capsys, "--config-file", str(REPO / BASELINE[0]), "--format", "fastreid",
                           "--output", str(tmp_path / "out"), "MODEL.WEIGHTS", str(weights))
    assert rc == 0, err
    assert calls == [("Baseline", str(weights), str(tmp_path / "out"))]
    assert stdout.splitlines() == [f"wrote {tmp_path / 'out' / 'model_final.pth'}",
                                   f"wrote {tmp_path / 'out' / 'config.yaml'}"]


@pytest.mark.parametrize("argv,message", [
    (["--format", "onnx", "--output", "m.onnx"], "no weights to export: add MODEL.WEIGHTS"),
    (["--format", "onnx", "--output", "m.onnx", "MODEL.WEIGHTS", "/nonexistent/model_final.pth"],
     "MODEL.WEIGHTS = '/nonexistent/model_final.pth': file not found"),
    (["--format", "tflite", "--output", "m.onnx", "MODEL.WEIGHTS", "x.pth"],
     "--format 'tflite' is not one of onnx, fastreid"),
    (["--output", "m.onnx"], "the following arguments are required: --format"),
    (["--format", "onnx", "--output", "m.onnx", "MODEL.WEIGHT", "x.pth"], "Unknown config key 'MODEL.WEIGHT'"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(capsys, argv, message):
    rc, stdout, err = _cli(capsys, "--config-file", str(REPO / BASELINE[0]), *argv)
    assert rc == 2 and stdout == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_weights_of_another_method_are_named(tmp_path, datasets_root, checkpoints, capsys):
    weights, _ = checkpoints(DGNET[0])
    rc, _, err = _cli(capsys, "--config-file", str(REPO / BASELINE[0]), "--format", "onnx",
                      "--output", str(tmp_path / "m.onnx"), "--check-dataset", DATASET, *CPU,
                      "MODEL.WEIGHTS", str(weights))
    assert rc == 2 and err.count("\n") == 1 and "This is a DGNet checkpoint" in err and "builds a Baseline" in err
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------------------------- what ONNX cannot express
def test_lmp_with_stripes_of_unequal_height_is_named(tmp_path, datasets_root, checkpoints):
    config, _, _ = BASELINE
    opts = ["TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "3"]  # a 4-row map in 3 stripes: rows 0-1, 1-2, 2-3
    weights, _ = checkpoints(config)
    cfg = _cfg(config, opts + ["MODEL.WEIGHTS", str(weights)])
    with pytest.raises(ExportError, match=r"Baseline with TEST.LMP: ONNX cannot express the LMP forward with "
                                          r"TEST.LMP.PARTS = 3 on the model's 4-row feature map .* one of 1, 2, 4"):
        export_onnx(cfg, str(tmp_path / "m.onnx"), sample_test_images(cfg, DATASET, 2))
    assert list(tmp_path.glob("m.onnx*")) == []


class _SpectralFeature(nn.Module):
    """Test-only: a forward with an op the ONNX exporter has no form for (an FFT)."""

    def forward(self, images):
        return torch.fft.rfft(images.mean(dim=1), dim=-1).abs().flatten(1)


class _DictFeature(nn.Module):
    """Test-only: a forward that returns a dict, not the (B, D) retrieval feature."""

    def forward(self, images):
        return {"features": images.mean(dim=(2, 3))}


def test_an_op_onnx_lacks_is_named(tmp_path):
    with pytest.raises(ExportError, match=r"_SpectralFeature: ONNX cannot express its eval forward \(opset 17\): "
                                          r"Exporting the operator 'aten::fft_rfft' to ONNX opset version 17 is "
                                          r"not supported\. Replace that op"):
        export_model_to_onnx(_SpectralFeature(), str(tmp_path / "m.onnx"), torch.rand(2, 3, 8, 4) * 255)
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ExportError, match=r"_DictFeature: its eval forward returns dict, not one \(batch, D\)"):
        export_model_to_onnx(_DictFeature(), str(tmp_path / "m.onnx"), torch.rand(2, 3, 8, 4) * 255)


class _BatchStatistic(nn.Module):
    """Test-only: ``.item()`` is a constant to the tracer, so the exported graph keeps the example batch's value:
    right on that batch, wrong on any other."""

    def forward(self, images):
        return images.mean(dim=(2, 3)) + images.mean().item()


def test_the_single_image_check_catches_a_forward_traced_for_one_batch(tmp_path):
    images = torch.rand(3, 3, 8, 4) * 255
    images[0] += 50
    path = str(tmp_path / "m.onnx")
    model = _BatchStatistic().train()
    export_model_to_onnx(model, path, images)
    check = check_onnx_model(model, path, images)
    assert check.max_rel_error <= 1e-6  # the batch it was traced with
    assert check.max_rel_error_single > 1e-2 and check.worst == check.max_rel_error_single
    assert model.training  # exported and checked in eval mode, given back in its own


def test_max_relative_error_is_per_image_and_relative_to_its_largest_value():
    expected = np.array([[0.0, 2.0, -4.0], [0.0, 0.0, 1e-3]])
    actual = expected + np.array([[1e-3, 0.0, 0.0], [0.0, 0.0, 1e-6]])
    assert max_relative_error(actual, expected) == pytest.approx(max(1e-3 / 4.0, 1e-6 / 1e-3))
    assert max_relative_error(expected, expected) == 0.0
    assert max_relative_error(expected * np.nan, expected) == float("inf")
    with pytest.raises(ExportError, match=r"features of shape \(2, 2\), the torch model \(2, 3\)"):
        max_relative_error(expected[:, :2], expected)


def test_check_images_of_another_size_are_named(tmp_path, checkpoints):
    weights, _ = checkpoints(BASELINE[0])
    cfg = _cfg(BASELINE[0], ["MODEL.WEIGHTS", str(weights)])
    with pytest.raises(ExportError, match=r"Baseline: the check images have shape \(2, 3, 128, 64\), the config "
                                          r"tests at INPUT.SIZE_TEST \[64, 32\]"):
        export_onnx(cfg, str(tmp_path / "m.onnx"), torch.rand(2, 3, 128, 64) * 255)


@pytest.mark.filterwarnings("ignore:The current data structure is deprecated")  # fastreid's Market1501 notice
def test_check_images_errors(datasets_root):
    cfg = _cfg(BASELINE[0], [])
    with pytest.raises(ExportError, match="check dataset 'SyntheticMarketTinny' is not a registered dataset"):
        sample_test_images(cfg, "SyntheticMarketTinny", 3)
    with pytest.raises(ExportError, match="at least 2 images"):
        sample_test_images(cfg, DATASET, 1)
    with pytest.raises(ExportError, match=r"check dataset Market1501 cannot be read: .* Check on another dataset, "
                                          r"e.g. SyntheticMarketTiny"):
        sample_test_images(cfg, "Market1501", 3)  # not under this test's datasets folder
