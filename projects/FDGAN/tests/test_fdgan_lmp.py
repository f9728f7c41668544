"""TEST.LMP on FD-GAN's E (SPGAN/eSPGAN TPAMI Sec. 3.4): the eval forward, checkpoints, DefaultPredictor, errors."""
import argparse
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.layers import LocalPooling, local_pool, set_local_pooling
from fastreid_gan.model_loading import inference_config, load_model_for_inference

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "projects" / "FDGAN" / "configs" / "market.yml"
# ResNet-18 E with layer4 stride 1 (a 4x2 map at 64x32), narrow G and D_pd
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.PRETRAIN", "False",
         "MODEL.BACKBONE.LAST_STRIDE", "1", "MODEL.FDGAN.GENERATOR.NGF", "8", "MODEL.FDGAN.GENERATOR.POSE_DIM", "16",
         "MODEL.FDGAN.GENERATOR.NOISE_DIM", "8", "MODEL.FDGAN.POSE_DISCRIMINATOR.NDF", "8",
         "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]"]
LMP_ON = ["TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "4"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _cfg(*opts):
    return inference_config(merge_config(get_cfg(), str(CONFIG), SMALL + list(opts)))


def test_eval_forward_is_es_feature_off_and_lmp_on():
    off = build_model(_cfg()).eval()
    on = build_model(_cfg(*LMP_ON)).eval()
    on.load_state_dict(off.state_dict())
    images = torch.rand(3, 3, 64, 32) * 255
    with torch.no_grad():
        assert torch.equal(off(images), off.encode(images)) and off(images).shape == (3, 512)
        fmap = off.reid_feature_map(images)
        assert fmap.shape == (3, 512, 4, 2)
        assert torch.allclose(fmap.mean(dim=(2, 3)), off.encode(images), atol=1e-6)  # the map E's pool reads
        feat = on({"images": images})
        expected = F.normalize(local_pool(fmap, 4) + local_pool(off.reid_feature_map(images.flip(3)), 4), dim=1)
    assert feat.shape == (3, 512 * 4)
    assert torch.allclose(feat, expected, atol=1e-6)


def test_a_checkpoint_without_lmp_works_unchanged_with_it(tmp_path):
    from fastreid.engine.defaults import DefaultPredictor

    trained = build_model(_cfg()).eval()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": trained.state_dict(), "iteration": 0}, str(weights))
    images = torch.rand(2, 3, 64, 32) * 255
    with torch.no_grad():
        raw = trained(images)
        expected = set_local_pooling(trained, LocalPooling(4, "avg"))(images)
    on = ["TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "4", "TEST.LMP.POOL", "avg"]
    loaded = load_model_for_inference(_cfg(*on), str(weights))  # the fit check passes: no new weights
    predictor = DefaultPredictor(_cfg(*on, "MODEL.WEIGHTS", str(weights)))
    with torch.no_grad():
        assert torch.allclose(loaded(images), expected, atol=1e-6)
        assert torch.allclose(predictor(images), expected, atol=1e-6)
        assert torch.allclose(set_local_pooling(loaded, None)(images), raw, atol=1e-6)


def test_more_parts_than_rows_is_named():
    model = build_model(_cfg("TEST.LMP.ENABLED", "True")).eval()  # PARTS 8 on a 4-row map
    with pytest.raises(ValueError, match=r"TEST.LMP.PARTS = 8 .* only 4 rows"):
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 32) * 255)


def test_evaluation_with_lmp_skips_vs_re_ranking_and_says_so(datasets_root, tmp_path):
    """market.yml turns the published V re-ranking on; V scores E's 512-d features, so LMP evaluates without it."""
    from fastreid_gan.runner import main

    data = ["DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
            "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "32", "OUTPUT_DIR", str(tmp_path)]
    args = argparse.Namespace(config_file=str(CONFIG), eval_only=True, untrained=True, resume=False, num_gpus=1,
                              opts=SMALL + data + LMP_ON)
    results = main(args)["SyntheticMarketTiny"]
    assert 0 < results["mAP"] <= 100 and "verified/mAP" not in results
    assert "TEST.PAIR_RERANK is skipped with TEST.LMP.ENABLED" in (tmp_path / "log.txt").read_text()
