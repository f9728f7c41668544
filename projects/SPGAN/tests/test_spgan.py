"""SPGAN's and eSPGAN's networks and meta-architectures (CPU-sized): shapes, the discriminator's padding variant
carried by the weights, SiaNet's input size, the public methods, and the eSPGAN training path that is still
missing (SPGAN's training: test_spgan_train.py)."""
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model
from fastreid_gan.checkpointer import RunCheckpointer
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.engine import LossWeight
from spgan.discriminator import SPGANDiscriminator
from spgan.generator import ResnetGenerator
from spgan.metric_net import SiaNet, sianet_feature_map_size

torch.set_num_threads(1)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.SPGAN.GENERATOR.NGF", "8", "MODEL.SPGAN.GENERATOR.N_BLOCKS", "2",
         "MODEL.SPGAN.DISCRIMINATOR.NDF", "8", "INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]"]


def _cfg(config="market2duke.yml", *opts):
    return merge_config(get_cfg(), str(CONFIGS / config), [*SMALL, *opts])


def test_generator_keeps_the_size_and_the_tanh_range():
    g = ResnetGenerator(ngf=8, n_blocks=2).eval()
    x = torch.randn(2, 3, 64, 32)
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert g.head.conv.bias is None and g.res.blocks[0].convs[0].conv.bias is None
    assert g.res.blocks[0].convs[1].conv.bias is not None and g.tail.conv.bias is not None
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.randn(1, 3, 66, 32))


def test_generator_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = ResnetGenerator(ngf=4, n_blocks=2)
    ckpt = ResnetGenerator(ngf=4, n_blocks=2, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 16)
    plain(x).square().sum().backward()
    ckpt(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


@pytest.mark.parametrize("variant, size", [("pyspgan", (32, 16)), ("openunreid", (30, 14))])
def test_discriminator_variants(variant, size):
    d = SPGANDiscriminator.build(ndf=8, variant=variant)
    assert d.variant == variant and int(d.padding_variant) == {"openunreid": 0, "pyspgan": 1}[variant]
    assert tuple(d(torch.randn(1, 3, 256, 128)).shape[-2:]) == size


def test_loading_weights_brings_their_variant():
    py = SPGANDiscriminator.build(ndf=8, variant="pyspgan")
    ou = SPGANDiscriminator.build(ndf=8, variant="openunreid")
    ou.load_state_dict(py.state_dict())
    assert ou.variant == "pyspgan" and ou.head.padding == (2, 1)
    x = torch.randn(1, 3, 64, 32)
    assert torch.equal(ou(x), py(x))
    bad = dict(py.state_dict(), padding_variant=torch.tensor(7))
    with pytest.raises(ValueError, match="padding_variant = 7"):
        ou.load_state_dict(bad)
    with pytest.raises(ValueError, match="unknown SPGAN discriminator padding variant 'pix2pix'"):
        SPGANDiscriminator.build(variant="pix2pix")


def test_sianet_follows_the_input_size():
    assert sianet_feature_map_size((256, 128)) == (4, 2)
    m = SiaNet((128, 64)).eval()
    assert m.fc1.in_features == 256 * 2 * 1
    out = m(torch.randn(3, 3, 128, 64))
    assert out.shape == (3, 64) and torch.allclose(out.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="SiaNet was built for 128x64 images"):
        m(torch.randn(1, 3, 256, 128))
    with pytest.raises(ValueError, match="leave nothing of a 64x32 input"):
        SiaNet((64, 32))


def test_spgan_public_methods_take_and_give_pixels():
    model = build_model(_cfg("market2duke.yml", "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "10")).eval()
    assert type(model).__name__ == "SPGAN"
    x = torch.rand(2, 3, 128, 64) * 255
    with torch.no_grad():
        for direction in ("source_to_target", "target_to_source"):
            y = model.translate(x, direction)
            assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 255
        assert model.discriminate(x, "target").shape == (2, 1, 16, 8)  # pyspgan padding at 128x64
        assert model.embed(x).shape == (2, 64)
        assert torch.equal(model(x), model({"images": x}))
    with pytest.raises(ValueError, match="direction must be one of"):
        model.translate(x, "a_to_b")
    with pytest.raises(ValueError, match="domain must be one of"):
        model.discriminate(x, "duke")
    assert set(model.sub_networks()) == {"gen_st", "gen_ts", "dis_s", "dis_t", "sianet"}
    assert set(model.default_optimizers()) == set(model.sub_networks())
    weights = model.loss_weights()
    assert weights["loss_cycle"].start_value == 10.0 and weights["loss_identity"].start_value == 5.0
    assert weights["loss_contrastive"] == LossWeight.ramp(0.0, 2.0, 20, 0)  # on from epoch 2 (of 10 iterations)
    assert "loss_ide" not in weights  # eSPGAN's


def test_phases_of_spgan_and_espgan():
    model = build_model(_cfg("market2duke.yml", "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "10"))
    assert [p.name for p in model.phases()] == ["gen", "sianet", "dis"]  # test_spgan_train.py trains it
    espgan = build_model(_cfg("espgan_market2duke.yml", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.HEADS.NUM_CLASSES", "3",
                              "MODEL.SPGAN.ESPGAN.STAGE", "joint"))
    assert [(p.name, p.every) for p in espgan.phases()] == [("gen", 3), ("ide", 1), ("dis", 1)]  # test_espgan_train
    weights = espgan.loss_weights()
    assert weights["loss_ide"].start_value == 5.0 and "loss_contrastive" not in weights  # lambda, no SiaNet


def test_sizes_must_agree():
    with pytest.raises(ValueError, match="INPUT.SIZE_TEST \\[256, 128\\] must equal INPUT.SIZE_TRAIN \\[128, 64\\]"):
        build_model(_cfg("market2duke.yml", "INPUT.SIZE_TEST", "[256, 128]"))


def test_a_saved_checkpoint_keeps_its_variant(tmp_path):
    model = build_model(_cfg("market2duke.yml", "MODEL.SPGAN.DISCRIMINATOR.PADDING", "openunreid"))
    RunCheckpointer(model, str(tmp_path), meta_architecture="SPGAN").save("model_final")
    other = build_model(_cfg())  # a config naming the pyspgan padding
    assert other.dis_s.variant == "pyspgan"
    RunCheckpointer(other, meta_architecture="SPGAN").load(str(tmp_path / "model_final.pth"), checkpointables=[])
    assert other.dis_s.variant == other.dis_t.variant == "openunreid"
    x = torch.rand(1, 3, 128, 64) * 255
    with torch.no_grad():
        assert torch.equal(model.eval().discriminate(x), other.eval().discriminate(x))


def test_espgan_builds_its_feature_learner():
    opts = ["MODEL.BACKBONE.DEPTH", "18x", "MODEL.SPGAN.FEATURE_LEARNER.BOTTLENECK_DIM", "32"]
    with pytest.raises(ValueError, match="MODEL.HEADS.NUM_CLASSES"):
        build_model(_cfg("espgan_market2duke.yml", *opts))
    model = build_model(_cfg("espgan_market2duke.yml", *opts, "MODEL.HEADS.NUM_CLASSES", "5")).eval()
    assert type(model).__name__ == "ESPGAN" and set(model.sub_networks()) == {"gen_st", "gen_ts", "dis_s", "dis_t",
                                                                             "ide"}
    x = torch.rand(2, 3, 128, 64) * 255
    with torch.no_grad():
        out = model.identify(x)
        assert out["pool"].shape == (2, 512) and out["bottleneck"].shape == (2, 32) and out["logits"].shape == (2, 5)
        assert torch.equal(model(x), out["pool"])
    assert model.identity_classifier_prefixes() == ("ide.classifier.",)
    assert model.default_optimizers()["ide"].NESTEROV
