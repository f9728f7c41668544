"""The FDGAN meta-architecture at CPU size: public methods, image sizes, evaluation through the project's evaluator
(E's raw feature and the published protocol of V re-ranking)."""
import argparse
import json
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.model_loading import inference_config
from fdgan import FDGAN
from fdgan.pose import joint_heatmaps

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "projects" / "FDGAN" / "configs" / "market.yml"
# ResNet-18 E and D_id, narrow G and D_pd, 64x32 images: a few MB, milliseconds per forward
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.PRETRAIN", "False",
         "MODEL.FDGAN.GENERATOR.NGF", "8", "MODEL.FDGAN.GENERATOR.POSE_DIM", "16", "MODEL.FDGAN.GENERATOR.NOISE_DIM", "8",
         "MODEL.FDGAN.POSE_DISCRIMINATOR.NDF", "8", "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]",
         "DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
         "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "32"]


def _small(*opts) -> FDGAN:
    return build_model(inference_config(merge_config(get_cfg(), str(CONFIG), SMALL + list(opts)))).eval()


def test_public_methods_and_shapes():
    torch.manual_seed(0)
    model = _small()
    images = torch.rand(2, 3, 64, 32) * 255
    keypoints = torch.randint(0, 32, (2, 18, 2)).numpy()
    posemaps = torch.from_numpy(joint_heatmaps(keypoints[0], (64, 32))).expand(2, -1, -1, -1)
    with torch.no_grad():
        feats = model.encode(images)
        assert feats.shape == (2, 512) and torch.equal(model(images), feats) and torch.equal(model({"images": images}),
                                                                                               feats)
        assert model.verify(feats[:1], feats[1:]).shape == (1, 2)
        assert model.encode_pose(posemaps).shape == (2, 16, 1, 1)
        fake = model.generate(posemaps, feats, torch.randn(2, 8))
        assert fake.shape == (2, 3, 64, 32) and fake.abs().max() <= 1
        fx, fy, logit = model.discriminate_identity(model.normalize(images), fake)
        assert fx.shape == fy.shape == (2, 512) and logit.shape == (2, 1)
        assert model.discriminate_pose(posemaps, fake).shape == (2, 1, 6, 2)
        assert 0 <= float(model.to_pixels(fake).min()) and float(model.to_pixels(fake).max()) <= 255
    # D_id is its own network, not E
    assert model.dis_id.encoder is not model.reid.encoder
    assert not any(p1.data_ptr() == p2.data_ptr() for p1 in model.dis_id.parameters() for p2 in model.reid.parameters())


def test_image_sizes_are_checked():
    with pytest.raises(ValueError, match="multiples of 32.*got 60x30"):
        _small("INPUT.SIZE_TRAIN", "[60, 30]", "INPUT.SIZE_TEST", "[60, 30]")
    with pytest.raises(ValueError, match="INPUT.SIZE_TEST .* must equal INPUT.SIZE_TRAIN"):
        _small("INPUT.SIZE_TEST", "[128, 64]")
    model = _small("INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]")  # other sizes work
    assert model.gen(torch.zeros(1, 18, 128, 64), torch.zeros(1, 512), torch.zeros(1, 8)).shape == (1, 3, 128, 64)
    with pytest.raises(ValueError, match=r"pose maps must be \(B, 18, 128, 64\)"):
        model.encode_pose(torch.zeros(1, 18, 64, 32))


def test_pretrain_without_weights_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch cache
    cfg = merge_config(get_cfg(), str(CONFIG), SMALL + ["MODEL.BACKBONE.PRETRAIN", "True"])
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.PRETRAIN_PATH is empty"):
        build_model(cfg)


def test_untrained_evaluation_with_and_without_the_published_protocol(datasets_root, tmp_path):
    from fastreid_gan.runner import main

    args = argparse.Namespace(config_file=str(CONFIG), eval_only=True, untrained=True, resume=False, num_gpus=1,
                              opts=SMALL + ["OUTPUT_DIR", str(tmp_path / "eval"), "TEST.PAIR_RERANK.ENABLED", "False"])
    results = main(args)["SyntheticMarketTiny"]
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())["SyntheticMarketTiny"]
    assert 0 < results["mAP"] <= 100 and written["mAP"] == pytest.approx(results["mAP"])
    assert "verified/mAP" not in results

    # the published protocol: V re-scores each query's top 100, both rankings reported
    args.opts = args.opts + ["TEST.PAIR_RERANK.ENABLED", "True", "OUTPUT_DIR", str(tmp_path / "eval_v")]
    verified = main(args)["SyntheticMarketTiny"]
    assert verified["mAP"] == pytest.approx(results["mAP"])
    assert 0 < verified["verified/mAP"] <= 100 and verified["verified/mAP"] != pytest.approx(verified["mAP"])


def test_pair_distance_uses_running_statistics_in_any_mode():
    torch.manual_seed(0)
    model = _small()
    q, g = torch.rand(6, 512), torch.rand(6, 512)
    in_eval = model.pair_distance(q, g)
    model.train()
    stats = {k: v.clone() for k, v in model.reid.head.state_dict().items()}
    assert torch.equal(model.pair_distance(q, g), in_eval)  # not the batch's statistics
    assert all(torch.equal(v, model.reid.head.state_dict()[k]) for k, v in stats.items())  # nothing moved
    assert model.reid.head.training  # the mode is given back


def test_channels_last_is_the_same_network():
    """MODEL.FDGAN.CHANNELS_LAST changes the memory layout only: the outputs and gradients of NHWC are as close to
    a float64 reference as NCHW's are. In eval mode: G's dropout draws its mask in memory order (another mask)."""
    torch.manual_seed(0)
    plain = _small()
    nhwc = _small("MODEL.FDGAN.CHANNELS_LAST", "True")
    nhwc.load_state_dict(plain.state_dict())
    reference = _small()
    reference.load_state_dict(plain.state_dict())
    reference.double()
    conv = nhwc.reid.encoder.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    images = torch.rand(4, 3, 64, 32) * 255
    keypoints = torch.randint(0, 32, (18, 2)).numpy()
    posemaps = torch.from_numpy(joint_heatmaps(keypoints, (64, 32))).expand(4, -1, -1, -1).contiguous()
    noise = torch.randn(4, 8)

    def outputs_and_grads(model, dtype):
        model.eval()
        feats = model.encode(images.to(dtype))
        fake = model.generate(posemaps.to(dtype), feats, noise.to(dtype))
        _, _, logit = model.discriminate_identity(model.normalize(images.to(dtype)), fake)
        loss = (logit.sum() + model.discriminate_pose(posemaps.to(dtype), fake).mean()
                + model.verify(feats[:2], feats[2:]).sum())
        loss.backward()
        grads = {k: p.grad.double() for k, p in model.named_parameters() if p.grad is not None}
        return [t.detach().double() for t in (feats, fake, logit)], grads

    def error(a, ref):
        return float((a - ref).norm() / ref.norm().clamp_min(1e-30))

    (out_a, grads_a), (out_b, grads_b) = outputs_and_grads(plain, torch.float32), outputs_and_grads(nhwc, torch.float32)
    out_ref, grads_ref = outputs_and_grads(reference, torch.float64)
    assert grads_a.keys() == grads_b.keys() == grads_ref.keys() and len(grads_ref) > 50
    for a, b, ref in zip(out_a, out_b, out_ref):
        assert error(b, ref) <= 10 * error(a, ref) + 1e-6
    for k, ref in grads_ref.items():
        assert error(grads_b[k], ref) <= 10 * error(grads_a[k], ref) + 1e-5, k
    assert nhwc.normalize(images).is_contiguous(memory_format=torch.channels_last)
