"""TEST.LMP on DG-Net's E_a (SPGAN/eSPGAN TPAMI Sec. 3.4): the eval forward, checkpoints, DefaultPredictor, errors."""
import pytest
import torch
import torch.nn.functional as F

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg
from fastreid_gan.layers import LocalPooling, local_pool, set_local_pooling
from fastreid_gan.model_loading import load_model_for_inference


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def tiny_cfg(parts: int = 0, pool: str = "max"):
    """ResNet-18 E_a (a 4x2 layer4 map at 64x32), narrow E_s / G / D; LMP on with ``parts`` > 0."""
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DGNet"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.HEADS.NUM_CLASSES = 5
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    d = cfg.MODEL.DGNET
    d.STRUCTURE.WIDTHS = [4, 8, 8, 16]
    d.STRUCTURE.DIM = 16
    d.STRUCTURE.N_RES = 1
    d.DECODER.N_RES = 1
    d.DECODER.MLP_DIM = 16
    d.DISCRIMINATOR.DIM = 8
    d.DISCRIMINATOR.N_RES = 1
    d.DISCRIMINATOR.N_SCALES = 2
    if parts:
        cfg.TEST.LMP.ENABLED, cfg.TEST.LMP.PARTS, cfg.TEST.LMP.POOL = True, parts, pool
    return cfg


def test_eval_forward_is_the_published_feature_off_and_lmp_on():
    off = build_model(tiny_cfg()).eval()
    on = build_model(tiny_cfg(4)).eval()
    on.load_state_dict(off.state_dict())
    images = torch.rand(3, 3, 64, 32) * 255
    with torch.no_grad():
        assert off(images).shape == (3, 1024)  # [f_prim, w f_fine]
        fmap = off.reid_feature_map(images)
        assert torch.equal(fmap, off.id(off.normalize(images))["feature_map"])
        feat = on({"images": images})
        expected = F.normalize(local_pool(fmap, 4) + local_pool(off.reid_feature_map(images.flip(3)), 4), dim=1)
    assert fmap.shape == (3, 512, 4, 2) and feat.shape == (3, 512 * 4)
    assert torch.allclose(feat, expected, atol=1e-6)


def test_a_checkpoint_without_lmp_works_unchanged_with_it(tmp_path):
    from fastreid.engine.defaults import DefaultPredictor

    trained = build_model(tiny_cfg()).eval()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": trained.state_dict(), "iteration": 0}, str(weights))
    images = torch.rand(2, 3, 64, 32) * 255
    with torch.no_grad():
        published = trained(images)
        expected = set_local_pooling(trained, LocalPooling(2))(images)
    assert expected.shape == (2, 1024)
    loaded = load_model_for_inference(tiny_cfg(2), str(weights))
    cfg = tiny_cfg(2)
    cfg.MODEL.WEIGHTS = str(weights)
    predictor = DefaultPredictor(cfg)  # no teacher needed
    with torch.no_grad():
        assert torch.allclose(loaded(images), expected, atol=1e-6)
        assert torch.allclose(predictor(images), expected, atol=1e-6)
        assert torch.allclose(set_local_pooling(loaded, None)(images), published, atol=1e-6)


def test_more_parts_than_rows_is_named():
    model = build_model(tiny_cfg(8)).eval()
    with pytest.raises(ValueError, match=r"TEST.LMP.PARTS = 8 .* only 4 rows"):
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 32) * 255)
    cfg = tiny_cfg(4, "sum")
    with pytest.raises(ValueError, match="TEST.LMP.POOL must be one of max, avg"):
        build_model(cfg)  # a config not checked by merge_config is checked when the model is built
