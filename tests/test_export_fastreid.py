"""``--format fastreid`` (:mod:`fastreid_gan.export.fastreid_format`) and the methods' registered deployable parts:
every method's test-time network served by fastreid's own ``Baseline`` gives the method's eval features; the
stock exports load in a process that never imports this project; inference needs no training-only settings."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid.engine.defaults import DefaultPredictor
from fastreid.modeling import build_model

from fastreid_gan.checkpointer import RunCheckpointer
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.export.fastreid_format import (
    FastreidExportError,
    export_fastreid,
    load_deploy_config,
    plugin_package,
)
from fastreid_gan.model_loading import checkpoint_num_classes, load_model_for_inference

REPO = Path(__file__).resolve().parents[1]
CPU = ["MODEL.DEVICE", "cpu"]
# CPU-sized variants of each method's config (64x32 images, ResNet-18, narrow generators and discriminators)
TINY = {
    "dgnet": ("projects/DGNet/configs/synthetic.yml",
              ["MODEL.DGNET.STRUCTURE.WIDTHS", "[4, 8, 8, 16]", "MODEL.DGNET.STRUCTURE.DIM", "16",
               "MODEL.DGNET.STRUCTURE.N_RES", "1", "MODEL.DGNET.DECODER.N_RES", "1",
               "MODEL.DGNET.DECODER.MLP_DIM", "16", "MODEL.DGNET.DISCRIMINATOR.DIM", "8",
               "MODEL.DGNET.DISCRIMINATOR.N_RES", "1", "MODEL.DGNET.CHANNELS_LAST", "True"]),
    "fdgan": ("projects/FDGAN/configs/market.yml",
              ["MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.LAST_STRIDE", "1", "MODEL.FDGAN.GENERATOR.NGF", "8",
               "MODEL.FDGAN.GENERATOR.POSE_DIM", "16", "MODEL.FDGAN.GENERATOR.NOISE_DIM", "8",
               "MODEL.FDGAN.POSE_DISCRIMINATOR.NDF", "8",
               "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]"]),
    "espgan": ("projects/SPGAN/configs/espgan_synthetic.yml",
               ["MODEL.SPGAN.GENERATOR.NGF", "4", "MODEL.SPGAN.GENERATOR.N_BLOCKS", "1",
                "MODEL.SPGAN.DISCRIMINATOR.NDF", "4", "MODEL.SPGAN.FEATURE_LEARNER.BOTTLENECK_DIM", "16"]),
    "ide": ("projects/SPGAN/configs/ide_synthetic.yml", []),  # SPGAN's IDE+: FrozenBN backbone, 512 bottleneck
    "baseline": ("configs/Synthetic/baseline_market.yml", []),
}
# FD-GAN's E and eSPGAN's C: the core's torchvision-stem ResNet backbone, registered by `import fastreid_gan`
PLUGIN = {"dgnet": "dgnet", "fdgan": "fastreid_gan", "espgan": "fastreid_gan", "ide": "", "baseline": ""}
# fastreid 1.4.0 without this project; before importing it, the two names it imports that Python >= 3.10 and
# torch >= 2 removed (docs/export.md: collections.Mapping in fastreid/data/build.py and evaluation/testing.py,
# torch._six.string_classes in data/build.py), nothing else
STOCK_SCRIPT = r"""
import collections, collections.abc, json, sys, types
collections.Mapping = collections.abc.Mapping
import torch
sys.modules["torch._six"] = torch._six = types.SimpleNamespace(string_classes=(str, bytes))
from fastreid.config import get_cfg
from fastreid.engine.defaults import DefaultPredictor
jobs, report = json.loads(sys.argv[1]), {}
for name, job in jobs.items():
    cfg = get_cfg()
    try:
        cfg.merge_from_file(job["config"])
        cfg.MODEL.DEVICE = "cpu"
        predictor = DefaultPredictor(cfg)
    except (KeyError, AssertionError) as exc:
        report[name] = "error: " + str(exc).strip().splitlines()[0]
        continue
    torch.save(predictor(torch.load(job["images"]).clone()), job["output"])
    report[name] = type(predictor.model).__module__
report["plugin_modules"] = sorted({m.split(".")[0] for m in sys.modules} & {"fastreid_gan", "dgnet", "fdgan", "spgan"})
print(json.dumps(report))
"""


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _cfg(method: str, *opts: str):
    path, tiny = TINY[method]
    return merge_config(get_cfg(), str(REPO / path), CPU + tiny + list(opts))


def _pretend_trained(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights and BatchNorm statistics away from their initial 0 / 1 (as a trained model's)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.add_(torch.randn(t.shape, generator=gen) * 0.1)
    return model.eval()


def _trained_checkpoint(method: str, out: Path, *opts: str):
    """A checkpoint of the method's model (5 identities, as a training run writes it) and that model."""
    cfg = _cfg(method, "MODEL.HEADS.NUM_CLASSES", "5", "MODEL.BACKBONE.PRETRAIN", "False", *opts)
    model = _pretend_trained(build_model(cfg))
    RunCheckpointer(model, str(out), meta_architecture=cfg.MODEL.META_ARCHITECTURE).save("model_final")
    return out / "model_final.pth", model


def _images(cfg, n: int = 3) -> torch.Tensor:
    height, width = cfg.INPUT.SIZE_TEST
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(2)) * 255


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Every method exported from its dataset config (``NUM_CLASSES 0``, its ``PRETRAIN`` settings) + ``MODEL.WEIGHTS``:
    name -> (written paths, the method's eval features of ``images``, images)."""
    torch.set_num_threads(1)
    out = {}
    for method in TINY:
        root = tmp_path_factory.mktemp(method)
        weights, model = _trained_checkpoint(method, root / "run")
        cfg = _cfg(method, "MODEL.WEIGHTS", str(weights))
        # the export's own check (DefaultPredictor on the written files) once; the tests below compare anyway
        paths = export_fastreid(cfg, str(root / "export"), check=method == "dgnet")
        images = _images(cfg)
        with torch.no_grad():
            out[method] = (paths, model(images.clone()), images)
    return out


@pytest.mark.parametrize("method", sorted(TINY))
def test_fastreid_baseline_with_the_registered_parts_gives_the_method_features(exports, method):
    (checkpoint, config), expected, images = exports[method]
    assert Path(checkpoint).name == "model_final.pth" and Path(config).name == "config.yaml"
    cfg = load_deploy_config(config, "cpu")
    assert cfg.MODEL.META_ARCHITECTURE == "Baseline" and cfg.MODEL.WEIGHTS == checkpoint
    saved = torch.load(checkpoint, weights_only=True)
    assert set(saved["model"]) == set(build_model(cfg).state_dict())  # every tensor, nothing else
    predictor = DefaultPredictor(cfg)
    assert _rel(predictor(images.clone()), expected) < 1e-5
    header = Path(config).read_text().splitlines()[1]
    assert plugin_package(cfg) == PLUGIN[method]
    if PLUGIN[method]:
        assert f"`import {PLUGIN[method]}`" in header and "NEEDS THE PLUGIN" in header
    else:
        assert header.startswith("# Stock fastreid loads it")


def test_dgnet_parts_are_named_in_the_config_and_drop_the_generator(exports):
    (checkpoint, config), _, _ = exports["dgnet"]
    cfg = load_deploy_config(config)
    assert (cfg.MODEL.BACKBONE.NAME, cfg.MODEL.HEADS.NAME) == ("build_dgnet_appearance_backbone", "DGNetFeatureHead")
    keys = torch.load(checkpoint, weights_only=True)["model"]
    assert any(k.startswith("heads.head_fine.bn.") for k in keys)
    assert not any(k.startswith(("gen.", "dis.", "id.")) or "classifier" in k for k in keys)
    model = build_model(cfg).train()
    with pytest.raises(RuntimeError, match="test-time head and cannot train: call model.eval()"):
        model.heads(torch.zeros(2, 512, 4, 2))
    # the DG-Net config itself, naming the parts: fastreid's build_model builds the same deployable model
    named = build_model(_cfg("dgnet", "MODEL.META_ARCHITECTURE", "Baseline", "MODEL.BACKBONE.PRETRAIN", "False",
                             "MODEL.BACKBONE.NAME", "build_dgnet_appearance_backbone",
                             "MODEL.HEADS.NAME", "DGNetFeatureHead")).eval()
    named.load_state_dict(keys)  # strict: the same tensors
    _, expected, images = exports["dgnet"]
    with torch.no_grad():
        assert _rel(named(images.clone()), expected) < 1e-5


def test_stock_exports_load_in_a_process_without_the_plugin(exports, tmp_path):
    jobs = {}
    for method in TINY:
        (_, config), _, images = exports[method]
        torch.save(images, tmp_path / f"{method}.pt")
        jobs[method] = {"config": config, "images": str(tmp_path / f"{method}.pt"),
                        "output": str(tmp_path / f"{method}_features.pt")}
    run = subprocess.run([sys.executable, "-c", STOCK_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                         timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["plugin_modules"] == []  # fastreid only: nothing of this project was imported
    for method in ("ide", "baseline"):
        assert report[method] == "fastreid.modeling.meta_arch.baseline", report
        assert _rel(torch.load(jobs[method]["output"]), exports[method][1]) < 1e-5
    # the plugin's parts: stock fastreid names the missing backbone, or DG-Net's head keys
    assert "Non-existent config key: MODEL.DGNET" in report["dgnet"], report
    for method in ("fdgan", "espgan"):  # their ResNet has torchvision's stem: the plugin's registered backbone
        assert ("No object named 'build_torchvision_stem_resnet_backbone' found in 'BACKBONE' registry"
                in report[method]), report


def test_lmp_is_kept_by_plugin_exports(tmp_path):
    lmp = ["TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "2"]
    weights, _ = _trained_checkpoint("dgnet", tmp_path / "run")
    cfg = _cfg("dgnet", "MODEL.WEIGHTS", str(weights), *lmp)
    _, config = export_fastreid(cfg, str(tmp_path / "export"))
    method = load_model_for_inference(cfg, str(weights))
    images = _images(cfg, 2)
    with torch.no_grad():
        expected = method(images.clone())
    deployed = load_deploy_config(config, "cpu")
    assert deployed.TEST.LMP.ENABLED and deployed.TEST.LMP.PARTS == 2
    assert expected.shape == (2, 512 * 2)
    assert _rel(DefaultPredictor(deployed)(images.clone()), expected) < 1e-5


def test_lmp_cannot_be_a_stock_export(tmp_path):
    weights, _ = _trained_checkpoint("baseline", tmp_path / "run")
    cfg = _cfg("baseline", "MODEL.WEIGHTS", str(weights), "TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "2")
    with pytest.raises(FastreidExportError, match="stock fastreid has no local max pooling .* TEST.LMP.ENABLED False"):
        export_fastreid(cfg, str(tmp_path / "export"))


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(FastreidExportError, match="MODEL.WEIGHTS is empty: add MODEL.WEIGHTS"):
        export_fastreid(_cfg("fdgan"), str(tmp_path / "a"))
    with pytest.raises(FastreidExportError, match="nothing.pth': file not found"):
        export_fastreid(_cfg("fdgan", "MODEL.WEIGHTS", str(tmp_path / "nothing.pth")), str(tmp_path / "a"))
    weights, _ = _trained_checkpoint("baseline", tmp_path / "run")
    with pytest.raises(FastreidExportError, match="This is a Baseline checkpoint") as info:
        export_fastreid(_cfg("dgnet", "MODEL.WEIGHTS", str(weights)), str(tmp_path / "a"))
    assert "\n" not in str(info.value)
    spgan = merge_config(get_cfg(), str(REPO / "projects/SPGAN/configs/synthetic.yml"),
                         CPU + ["MODEL.WEIGHTS", str(weights)])
    with pytest.raises(FastreidExportError, match="SPGAN is an image translator.*IDE\\+ feature learner"):
        export_fastreid(spgan, str(tmp_path / "a"))


def test_checkpoint_num_classes_reads_the_classifier(tmp_path):
    weights, _ = _trained_checkpoint("baseline", tmp_path / "run")
    assert checkpoint_num_classes(str(weights), "heads.weight") == 5
    with pytest.raises(ValueError, match="has no identity classifier id.head_prim.classifier.weight .* "
                                         "set MODEL.HEADS.NUM_CLASSES"):
        checkpoint_num_classes(str(weights), "id.head_prim.classifier.weight")


# ------------------------------------------------------------------------------------------------ full size
FULL_SIZE = {
    "baseline": "configs/Market1501/baseline_R50.yml",
    "dgnet": "projects/DGNet/configs/market.yml",
    "fdgan": "projects/FDGAN/configs/market.yml",
    "espgan": "projects/SPGAN/configs/espgan_market2duke.yml",
    "ide": "projects/SPGAN/configs/ide_market2duke.yml",
}


@pytest.mark.parametrize("method", sorted(FULL_SIZE))
def test_dataset_config_and_weights_are_enough_for_inference(tmp_path, method):
    """Each method's full-size dataset config as it is (``NUM_CLASSES 0``, ImageNet ``PRETRAIN True`` with no
    ``PRETRAIN_PATH``) + ``MODEL.WEIGHTS`` builds the eval model and loads a trained checkpoint (751 identities)."""
    config = str(REPO / FULL_SIZE[method])
    trained_cfg = merge_config(get_cfg(), config, CPU + ["MODEL.HEADS.NUM_CLASSES", "751",
                                                         "MODEL.BACKBONE.PRETRAIN", "False"])
    trained = _pretend_trained(build_model(trained_cfg))
    RunCheckpointer(trained, str(tmp_path), meta_architecture=trained_cfg.MODEL.META_ARCHITECTURE).save("model_final")
    cfg = merge_config(get_cfg(), config, CPU + ["MODEL.WEIGHTS", str(tmp_path / "model_final.pth")])
    assert cfg.MODEL.HEADS.NUM_CLASSES == 0 and cfg.MODEL.BACKBONE.PRETRAIN_PATH == ""
    loaded = load_model_for_inference(cfg, cfg.MODEL.WEIGHTS)
    images = torch.rand(1, 3, 128, 64) * 255  # a small image: the build and the load are what is tested
    with torch.no_grad():
        assert torch.equal(loaded(images.clone()), trained(images.clone()))
    classifier = {"dgnet": "id.head_prim.classifier", "espgan": "ide.classifier"}.get(method)
    if classifier:  # fastreid's DefaultPredictor builds the model itself: the class count is the file's
        predictor = DefaultPredictor(cfg)
        assert predictor.model.get_submodule(classifier).weight.shape[0] == 751
        assert torch.equal(predictor(images.clone()), trained(images.clone()))
