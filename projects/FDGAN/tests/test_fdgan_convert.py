"""Proof that the FD-GAN converter plus our modules reproduce the published architecture exactly.

The published files are recreated from the key listings in /work/shared/reference/fdgan_official with RECIPE.md's
seeded recipe, in the published format (``module.`` prefixes, no ``num_batches_tracked``, torch's legacy
serialisation, stage I's ``{'state_dict': ...}``), converted through the CLI, loaded with ``MODEL.WEIGHTS``'s
loader into ``projects/FDGAN/configs/market.yml``'s model and compared with every entry of expected.pt
(relative error < 1e-4).
"""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid_gan.checkpoint_io import WeightsMismatchError
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.model_loading import load_model_for_inference
from fastreid_gan.official_fixtures import recipe_state_dict, relative_error
from fdgan.convert import map_official_key
from fdgan.pose import flip_keypoints, joint_heatmaps

torch.set_num_threads(1)

REF = Path(os.environ.get("FDGAN_OFFICIAL_REF", "/work/shared/reference/fdgan_official"))
REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "projects" / "FDGAN" / "configs" / "market.yml"
pytestmark = pytest.mark.skipif(not (REF / "expected.pt").is_file(), reason=f"no FD-GAN fixture at {REF}")
TOL = 1e-4
SEEDS = {"E": 0, "G": 1, "Di": 2, "Dp": 3}


def _published_format(state):
    """What torch 0.3.1 + DataParallel wrote: every key prefixed ``module.``, no ``num_batches_tracked``."""
    return {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _save_legacy(obj, path):
    torch.save(obj, str(path), _use_new_zipfile_serialization=False)  # the pre-1.6 (non-zip) format


def _convert(argv):
    spec = importlib.util.spec_from_file_location("convert_official_cli", REPO / "tools" / "convert_official.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli.main(argv)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    d = tmp_path_factory.mktemp("fdgan_official")
    states = {net: recipe_state_dict(REF / f"{net}_keys.tsv", seed) for net, seed in SEEDS.items()}
    paths = {net: d / f"100_net_{net}.pth" for net in SEEDS}
    for net, path in paths.items():
        _save_legacy(_published_format(states[net]), path)
    stage1 = d / "model_best.pth.tar"
    _save_legacy({"state_dict": _published_format(states["E"]), "epoch": 99}, stage1)
    return {"dir": d, "paths": paths, "stage1": stage1, "states": states}


@pytest.fixture(scope="module")
def converted(published):
    out = published["dir"] / "fdgan_market.pth"
    p = published["paths"]
    assert _convert(["fdgan", "--E", str(p["E"]), "--G", str(p["G"]), "--Di", str(p["Di"]), "--Dp", str(p["Dp"]),
                     "--output", str(out)]) == 0
    return out


def _market_cfg(*opts):
    return merge_config(get_cfg(), str(CONFIG), ["MODEL.DEVICE", "cpu", *opts])


def test_every_published_key_is_mapped_or_named_as_dropped(published):
    for net, state in published["states"].items():
        dropped = [k for k in state if map_official_key(net, k) is None]
        assert dropped == ([] if net in ("G", "Dp") else ["base_model.base.fc.weight", "base_model.base.fc.bias"])
    with pytest.raises(KeyError, match="not a key of FD-GAN's published G"):
        map_official_key("G", "model.0.weight")


def test_converted_checkpoint_reproduces_the_published_outputs(converted):
    expected = torch.load(str(REF / "expected.pt"), map_location="cpu", weights_only=True)
    model = load_model_for_inference(_market_cfg(), str(converted))  # strict fit check: every tensor set
    x, noise = expected["x"], expected["noise"]
    posemap = expected["posemap"].float()
    errors = {}
    with torch.no_grad():
        feat = model.encode(x * model.pixel_std + model.pixel_mean)  # encode() takes 0..255 images
        errors["feat_E"] = relative_error(feat, expected["feat_E"])
        errors["eval forward"] = relative_error(model(x * model.pixel_std + model.pixel_mean), expected["feat_E"])
        errors["verif_logits"] = relative_error(model.verify(feat[:1], feat[1:]), expected["verif_logits"])
        errors["g_pose_feature"] = relative_error(model.encode_pose(posemap), expected["g_pose_feature"])
        errors["fake"] = relative_error(model.generate(posemap, expected["feat_E"], noise), expected["fake"])
        errors["fake end to end"] = relative_error(model.generate(posemap, feat, noise), expected["fake"])
        fx, ffake, logit = model.discriminate_identity(x, expected["fake"])
        errors["di_feat_x"] = relative_error(fx, expected["di_feat_x"])
        errors["di_feat_fake"] = relative_error(ffake, expected["di_feat_fake"])
        errors["di_logit"] = relative_error(logit, expected["di_logit"])
        errors["dp_fake"] = relative_error(model.discriminate_pose(posemap, expected["fake"]), expected["dp_fake"])
        errors["dp_real"] = relative_error(model.discriminate_pose(posemap, x), expected["dp_real"])
    assert max(errors.values()) < TOL, errors


def test_stage_one_file_converts_and_evaluates_with_the_named_partial_load(published, tmp_path):
    out = tmp_path / "stage1.pth"
    assert _convert(["fdgan", "--E", str(published["stage1"]), "--output", str(out)]) == 0
    with pytest.raises(WeightsMismatchError, match="it would set 325 of the model's 734 tensors"):
        load_model_for_inference(_market_cfg(), str(out))
    model = load_model_for_inference(_market_cfg("MODEL.WEIGHTS_KEEP_INIT", "['gen.', 'dis_id.', 'dis_pose.']"),
                                     str(out))
    expected = torch.load(str(REF / "expected.pt"), map_location="cpu", weights_only=True)
    with torch.no_grad():
        feat = model.encode(expected["x"] * model.pixel_std + model.pixel_mean)
    assert relative_error(feat, expected["feat_E"]) < TOL


@pytest.mark.parametrize("case", ["G-as-E", "E-as-Di", "Di-as-E", "E-as-G", "dgnet-file", "converted", "empty"])
def test_a_wrong_file_is_named(published, converted, tmp_path, case, capsys):
    p = published["paths"]
    args = {"E": p["E"], "G": p["G"], "Di": p["Di"], "Dp": p["Dp"]}
    if case == "G-as-E":
        args["E"] = p["G"]
    elif case == "E-as-Di":
        args["Di"] = p["E"]
    elif case == "Di-as-E":
        args["E"] = p["Di"]
    elif case == "E-as-G":
        args["G"] = p["E"]
    elif case == "dgnet-file":
        dgnet = tmp_path / "gen_00100000.pt"
        torch.save({"a": {"enc_content.model.0.conv.weight": torch.zeros(1)}}, str(dgnet))
        args["E"] = dgnet
    elif case == "converted":
        args["E"] = converted
    else:
        (tmp_path / "empty.pth").write_bytes(b"")
        args["Dp"] = tmp_path / "empty.pth"
    out = tmp_path / "out.pth"
    argv = ["fdgan", "--output", str(out)]
    for net, path in args.items():
        argv += [f"--{net}", str(path)]
    assert _convert(argv) == 2
    message = capsys.readouterr().err
    wrong = {"G-as-E": "E", "E-as-Di": "Di", "Di-as-E": "E", "E-as-G": "G", "dgnet-file": "E", "converted": "E", "empty": "Dp"}[case]
    assert f"--{wrong} = '" in message, message
    assert not out.exists()  # nothing half-written


def test_pose_maps_equal_the_published_ones():
    expected = torch.load(str(REF / "expected.pt"), map_location="cpu", weights_only=True)
    for i in range(2):
        maps = joint_heatmaps(expected["keypoints"][i].numpy(), (256, 128), sigma=5.0)
        ref = expected["posemap"][i].float().numpy()
        assert np.abs(maps - ref).max() < 1e-3  # the fixture is stored in float16
        missing = (expected["keypoints"][i] < 0).any(dim=1).numpy()
        assert missing.any() and (maps[missing] == 0).all()


@pytest.mark.parametrize("length", [1, 3, 32, 128])
@pytest.mark.parametrize("sigma", [0.4, 1.37, 5.0, 11.3])
def test_heatmap_profile_is_scipys_gaussian_filter(length, sigma):
    """The published maps are scipy's gaussian_filter of an impulse (reflecting borders); ours computes the same
    profile directly, also where the kernel is wider than the image (several reflections)."""
    from scipy.ndimage import gaussian_filter, gaussian_filter1d

    from fdgan.pose import _profile

    for position in {0, length // 2, length - 1}:
        impulse = np.zeros(length)
        impulse[position] = 1.0
        reference = gaussian_filter1d(impulse, sigma)
        assert np.abs(_profile(position, length, sigma) - reference / reference.max()).max() < 1e-12
    impulse2d = np.zeros((length, 5))
    impulse2d[length - 1, 1] = 1.0
    reference = gaussian_filter(impulse2d, sigma)
    keypoints = np.array([[length - 1, 1]])
    assert np.abs(joint_heatmaps(keypoints, (length, 5), sigma)[0] - reference / reference.max()).max() < 1e-6


def test_flip_moves_and_swaps_joints():
    keypoints = np.full((18, 2), -1)
    keypoints[4] = (100, 20)   # right wrist at x = 20
    keypoints[1] = (40, 64)    # neck
    flipped = flip_keypoints(keypoints, width=128)
    assert tuple(flipped[7]) == (100, 107) and tuple(flipped[4]) == (-1, -1)  # now the left wrist, mirrored
    assert tuple(flipped[1]) == (40, 63)
    published = flip_keypoints(keypoints, width=128, swap_left_right=False)
    assert tuple(published[4]) == (100, 107)
    mirrored_maps = joint_heatmaps(published, (256, 128))
    assert np.allclose(mirrored_maps[4], joint_heatmaps(keypoints, (256, 128))[4][:, ::-1], atol=1e-6)
