"""Proof that the DG-Net converter plus our modules reproduce the published architecture exactly.

The published-format files (``torch.save({'a': state_dict})``) are recreated from the key listings in
/work/shared/reference/dgnet_official with RECIPE.md's seeded recipe, converted (through the CLI too), loaded
strictly into our modules, run in eval mode and compared with every entry of expected.pt (relative error < 1e-4).
"""
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import fastreid_gan  # noqa: F401
from dgnet.appearance_encoder import AppearanceEncoder, load_imagenet_resnet
from dgnet.convert import (
    convert_dgnet_official,
    dropped_keys,
    load_official_checkpoint,
    map_official_key,
)
from dgnet.discriminator import build_dgnet_discriminator
from dgnet.generator import DGNetGenerator
from fastreid_gan.official_checkpoints import available_converters
from fastreid_gan.official_fixtures import read_key_listing, recipe_state_dict, relative_error

torch.set_num_threads(1)

REF = Path(os.environ.get("DGNET_OFFICIAL_REF", "/work/shared/reference/dgnet_official"))
REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(not (REF / "expected.pt").is_file(), reason=f"no DG-Net fixture at {REF}")
TOL = 1e-4


def _listing(name):
    return read_key_listing(REF / name)


def _recipe_state_dict(name, seed):
    """RECIPE.md: one generator per net, keys drawn in listing order."""
    return recipe_state_dict(REF / name, seed)


def _load_cli():
    spec = importlib.util.spec_from_file_location("convert_official_cli", REPO / "tools" / "convert_official.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _container(num_classes=751):
    """Stand-in for the DG-Net meta-architecture: sub-networks gen / dis / id, built from our public API."""
    m = nn.Module()
    m.gen = DGNetGenerator()
    m.dis = build_dgnet_discriminator()
    m.id = AppearanceEncoder(num_classes=num_classes, depth=50, last_stride=1)
    return m


_rel = relative_error


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The three published-format files (torch.save({'a': sd})) and their state dicts."""
    d = tmp_path_factory.mktemp("dgnet_official")
    sds = {"gen": _recipe_state_dict("gen_keys.tsv", 0), "dis": _recipe_state_dict("dis_keys.tsv", 1),
           "id": _recipe_state_dict("id_keys.tsv", 2)}
    paths = {}
    for net, sd in sds.items():
        paths[net] = str(d / f"{net}_00100000.pt")
        torch.save({"a": sd}, paths[net])
    return {"dir": d, "paths": paths, "sds": sds}


@pytest.fixture(scope="module")
def converted_file(published):
    out = str(published["dir"] / "converted" / "dgnet_market.pth")
    p = published["paths"]
    rc = _load_cli().main(["dgnet", "--gen", p["gen"], "--id", p["id"], "--dis", p["dis"], "--num-classes", "751",
                           "--output", out])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def expected():
    return torch.load(REF / "expected.pt")


def test_listings_are_fully_mapped(published):
    for net, sd in published["sds"].items():
        for key in sd:
            map_official_key(net, key)  # raises on an unmapped key
    assert sorted(dropped_keys("id", published["sds"]["id"])) == ["model.fc.bias", "model.fc.weight"]
    assert len(dropped_keys("gen", published["sds"]["gen"])) == 16  # 8 AdaIN layers x running_mean/var
    assert dropped_keys("dis", published["sds"]["dis"]) == []


def test_converted_checkpoint_reproduces_expected(converted_file, expected):
    ckpt = torch.load(converted_file, map_location="cpu")
    assert ckpt["__converted_from__"] == "dgnet-official"
    model = _container()
    model.load_state_dict(ckpt["model"], strict=True)
    model.eval()
    x = expected["x"]
    errors = {}
    with torch.no_grad():
        gray = DGNetGenerator.to_gray(x)
        errors["gray"] = _rel(gray, expected["gray"])
        errors["structure"] = _rel(model.gen.encode(expected["gray"]), expected["structure"])
        out = model.id(x)
        for key in ("appearance", "logits_prim", "logits_fine", "bottleneck_prim", "bottleneck_fine"):
            assert out[key].shape == expected[key].shape
            errors[key] = _rel(out[key], expected[key])
        errors["decoded"] = _rel(model.gen.decode(expected["structure"], expected["appearance"]), expected["decoded"])
        # end to end: our own codes through our decoder
        errors["decoded_end_to_end"] = _rel(model.gen(gray, out["appearance"]), expected["decoded"])
        dis_out = model.dis(x)
        assert len(dis_out) == len(expected["dis_outputs"])
        for i, (a, b) in enumerate(zip(dis_out, expected["dis_outputs"])):
            assert a.shape == b.shape
            errors[f"dis_outputs[{i}]"] = _rel(a, b)
    covered = {k.split("[")[0] for k in errors} | {"x"}
    assert covered >= set(expected), f"entries not checked: {set(expected) - covered}"
    print("\nrelative errors vs expected.pt:\n" + "\n".join(f"  {k:20s} {v:.3e}" for k, v in errors.items()))
    assert all(v < TOL for v in errors.values()), errors


def test_function_api_equals_cli(published, converted_file):
    p = published["paths"]
    sd = convert_dgnet_official(load_official_checkpoint(p["gen"], "gen"), load_official_checkpoint(p["id"], "id"),
                                load_official_checkpoint(p["dis"], "dis"))
    cli = torch.load(converted_file, map_location="cpu")["model"]
    assert list(sd) == list(cli)
    assert all(torch.equal(sd[k], cli[k]) for k in sd)
    assert all(k.split(".")[0] in {"gen", "dis", "id"} for k in sd)
    # without D: only gen.* and id.*
    no_dis = convert_dgnet_official(published["sds"]["gen"], published["sds"]["id"])
    assert {k.split(".")[0] for k in no_dis} == {"gen", "id"}


def test_fastreid_checkpointer_loads_converted(converted_file):
    from fastreid.utils.checkpoint import Checkpointer

    model = _container()
    Checkpointer(model).load(converted_file)
    ref = torch.load(converted_file, map_location="cpu")["model"]
    state = model.state_dict()
    assert set(state) == set(ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)


# ------------------------------------------------------------------------------------------------ errors
def test_cli_registry_and_errors(published, tmp_path, capsys):
    assert "dgnet" in available_converters()
    cli = _load_cli()
    p = published["paths"]
    out = str(tmp_path / "x.pth")
    # swapped files: the id file given as --gen
    assert cli.main(["dgnet", "--gen", p["id"], "--id", p["id"], "--output", out]) == 2
    assert "looks like the published 'id' file" in capsys.readouterr().err
    assert cli.main(["dgnet", "--gen", str(tmp_path / "missing.pt"), "--id", p["id"], "--output", out]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["dgnet", "--gen", p["gen"], "--id", p["id"], "--num-classes", "702", "--output", out]) == 2
    assert "751 classes" in capsys.readouterr().err
    assert not os.path.exists(out)
    assert cli.main(["dgnet", "--gen", p["gen"], "--id", p["id"], "--drop-classifiers", "--output", out]) == 0
    sd = torch.load(out)["model"]
    assert not any(".classifier." in k for k in sd) and "id.head_prim.fc.weight" in sd
    with pytest.raises(SystemExit):
        cli.main(["nosuchmethod"])


def test_wrong_file_formats(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"foo.weight": torch.zeros(1)}, "epoch": 3}, bad)
    with pytest.raises(ValueError, match="enc_content"):
        load_official_checkpoint(str(bad), "gen")
    torch.save({"a": {"foo.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match="cnns"):
        load_official_checkpoint(str(bad))
    torch.save({"a": {"module.cnns.0.9.bias": torch.zeros(1)}}, bad)
    assert list(load_official_checkpoint(str(bad), "dis")) == ["cnns.0.9.bias"]
    with pytest.raises(FileNotFoundError):
        load_official_checkpoint(str(tmp_path / "none.pt"))


def test_unmatched_key_and_shape_mismatch_name_the_key(published):
    gen, ident, dis = (dict(published["sds"][k]) for k in ("gen", "id", "dis"))
    with pytest.raises(ValueError, match=r"enc_content\.model\.9\.conv\.weight"):
        convert_dgnet_official({**gen, "enc_content.model.9.conv.weight": torch.zeros(1)}, ident)
    with pytest.raises(ValueError, match=r"model\.layer5\.0\.conv1\.weight"):
        convert_dgnet_official(gen, {**ident, "model.layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"cnns\.3\.9\.bias"):  # a 4th scale our D does not have
        convert_dgnet_official(gen, ident, {**dis, "cnns.3.9.bias": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"shape mismatch.*mlp_w2\.model\.0\.fc\.weight"):
        convert_dgnet_official({**gen, "mlp_w2.model.0.fc.weight": torch.zeros(512, 1024)}, ident)
    missing = dict(gen)
    del missing["dec.model.8.conv.bias"]
    with pytest.raises(ValueError, match=r"gen\.dec\.out\.2\.conv\.bias"):
        convert_dgnet_official(missing, ident)


# ------------------------------------------------------------------------------------------------ networks
def test_cpu_sized_variant_shapes_and_gradients():
    torch.manual_seed(0)
    ida = AppearanceEncoder(num_classes=10, depth=18, last_stride=1)
    assert ida.appearance_dim == 512 * 4
    gen = DGNetGenerator(enc_widths=(8, 16, 16, 32), structure_dim=64, appearance_dim=ida.appearance_dim,
                         mlp_dim=64)
    # 128x64 is about the smallest input: ASPP's dilation-9 reflect padding needs a structure map > 9 px wide
    x = torch.randn(2, 3, 128, 64)
    out = ida(x)
    assert out["appearance"].shape == (2, 2048) and not out["appearance"].requires_grad  # published: detached
    assert out["pooled"].shape == (2, 512) and out["feature_map"].shape == (2, 512, 8, 4)
    assert out["logits_prim"].shape == out["logits_fine"].shape == (2, 10)
    assert out["bottleneck_prim"].shape == out["bottleneck_fine"].shape == (2, 512)
    s = gen.encode(gen.to_gray(x))
    assert s.shape == (2, 64, 32, 16)
    scales, shifts = gen.dec.adain_params(out["appearance"])
    assert scales.shape == shifts.shape == (2, gen.dec.num_adain_params) == (2, 8 * 64)
    img = gen.decode(s, out["appearance"])
    assert img.shape == x.shape
    torch.testing.assert_close(gen.dec.decode_with_params(s, scales, shifts), img)
    (img.abs().mean() + out["logits_prim"].logsumexp(1).mean()).backward()
    assert gen.dec.mlp_scale[0].fcs[0].weight.grad is not None
    assert ida.backbone.conv1.weight.grad is not None
    # the appearance code carries gradients when asked
    ida2 = AppearanceEncoder(num_classes=10, depth=18, detach_appearance=False)
    assert ida2(x)["appearance"].requires_grad


def test_appearance_code_is_channel_major_part_max_pool():
    torch.manual_seed(0)
    ida = AppearanceEncoder(num_classes=5, depth=18).eval()
    x = torch.randn(1, 3, 128, 64)
    with torch.no_grad():
        out = ida(x)
    fmap = out["feature_map"]  # (1, 512, 8, 4)
    c, part = 7, 2
    assert float(out["appearance"][0, c * 4 + part]) == float(fmap[0, c, 2 * part:2 * part + 2].max())
    assert float(out["pooled"][0, c]) == float(fmap[0, c].max())


def test_appearance_encoder_pretrained_weights(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-test.pth"
    torch.save(tv.state_dict(), path)
    ida = AppearanceEncoder(num_classes=3, depth=18, pretrain=True, pretrain_path=str(path))
    ours = ida.backbone.state_dict()
    for k, v in tv.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(ours[k], v), k
    # torchvision and our backbone (torchvision stem) compute the same features
    tv.eval(), ida.eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        ida_s2 = AppearanceEncoder(num_classes=3, depth=18, last_stride=2, pretrain=True, pretrain_path=str(path))
        torch.testing.assert_close(ida_s2.eval().backbone(x), ref)
    with pytest.raises(FileNotFoundError, match="not found"):
        AppearanceEncoder(num_classes=3, depth=18, pretrain=True, pretrain_path=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="keys missing"):
        torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
        load_imagenet_resnet(ida.backbone, str(tmp_path / "bad.pth"))
    with pytest.raises(ValueError, match="shape mismatch|keys missing"):
        AppearanceEncoder(num_classes=3, depth=34, pretrain=True, pretrain_path=str(path))
