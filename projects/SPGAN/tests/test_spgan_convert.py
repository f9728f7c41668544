"""Proof that the SPGAN / eSPGAN converters plus our modules reproduce both published implementations exactly.

The published files are recreated from the key listings in /work/shared/reference/spgan_official with RECIPE.md's
seeded recipe, in the published formats (py-spgan's unwrapped ``Epoch_(N).ckpt`` with optimizer states, eSPGAN's
DataParallel GANs + unwrapped IDE, OpenUnReID's ``{'state_dict'}`` files with ``module.``; torch's legacy
serialisation), converted through the CLI, loaded with ``MODEL.WEIGHTS``'s loader into the shipped configs'
models and compared with every entry of expected.pt (relative error < 1e-4). The nets of the other direction get
other seeds, so a swapped mapping cannot pass.
"""
import importlib.util
import os
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.model_loading import load_model_for_inference
from fastreid_gan.official_fixtures import recipe_state_dict, relative_error

torch.set_num_threads(1)

REF = Path(os.environ.get("SPGAN_OFFICIAL_REF", "/work/shared/reference/spgan_official"))
REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "projects" / "SPGAN" / "configs"
pytestmark = pytest.mark.skipif(not (REF / "expected.pt").is_file(), reason=f"no SPGAN fixture at {REF}")
TOL = 1e-4
SEEDS = {"G": 0, "D": 1, "M": 2, "IDE": 3}
OTHER = 10  # seed offset of the nets of the other direction / domain (not in expected.pt)


def _convert(argv):
    spec = importlib.util.spec_from_file_location("convert_official_cli", REPO / "tools" / "convert_official.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli.main(argv)


def _save_legacy(obj, path):
    torch.save(obj, str(path), _use_new_zipfile_serialization=False)


def _optimizer_state():
    return {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-8, "weight_decay": 0,
                                           "amsgrad": False, "params": [0, 1, 2]}]}


def _module(state):
    return {f"module.{k}": v for k, v in state.items()}


@pytest.fixture(scope="module")
def expected():
    return torch.load(str(REF / "expected.pt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """py-spgan, eSPGAN and OpenUnReID files. Domain A / the source: Gb (A -> B) and Da carry the fixture's
    seeds; Ga and Db other ones."""
    d = tmp_path_factory.mktemp("spgan_official")
    py = {net: recipe_state_dict(REF / f"pyspgan_{net}_keys.tsv", seed) for net, seed in SEEDS.items() if net != "IDE"}
    py_other = {net: recipe_state_dict(REF / f"pyspgan_{net}_keys.tsv", seed + OTHER) for net, seed in SEEDS.items()
                if net in ("G", "D")}
    ide = recipe_state_dict(REF / "espgan_IDE_keys.tsv", SEEDS["IDE"])
    optimizers = {f"{n}_optimizer": _optimizer_state() for n in ("da", "db", "ga", "gb", "me")}
    pyspgan = d / "Epoch_(20).ckpt"
    _save_legacy({"epoch": 20, "Ga": py_other["G"], "Gb": py["G"], "Da": py["D"], "Db": py_other["D"],
                  "Me": py["M"], **optimizers}, pyspgan)
    espgan = d / "espgan_Epoch_(15).ckpt"
    espgan_opt = {f"{n}_optimizer": _optimizer_state() for n in ("da", "db", "ga", "gb", "IDE")}
    _save_legacy({"epoch": 15, "Ga": _module(py_other["G"]), "Gb": _module(py["G"]), "Da": _module(py["D"]),
                  "Db": _module(py_other["D"]), "IDE": ide, **espgan_opt}, espgan)
    ide_file = d / "IDE_market.pth"
    _save_legacy(ide, ide_file)
    ounreid = d / "openunreid_work_dir"
    ounreid.mkdir()
    nets = {"G_A": ("G", 0), "G_B": ("G", OTHER), "D_A": ("D", 0), "D_B": ("D", OTHER), "Metric": ("M", 0)}
    for name, (net, offset) in nets.items():
        state = recipe_state_dict(REF / f"ounreid_{net}_keys.tsv", SEEDS[net] + offset)
        _save_legacy({"epoch": 50, "best_mAP": 0.0, "state_dict": _module(state)}, ounreid / f"checkpoint_{name}.pth")
    return {"dir": d, "pyspgan": pyspgan, "espgan": espgan, "ide": ide_file, "openunreid": ounreid}


@pytest.fixture(scope="module")
def converted(published):
    d = published["dir"]
    out = {name: d / f"{name}.pth" for name in ("pyspgan", "pyspgan_source_B", "openunreid", "espgan", "espgan_ide",
                                                 "ide_only")}
    assert _convert(["spgan", "--pyspgan", str(published["pyspgan"]), "--output", str(out["pyspgan"])]) == 0
    assert _convert(["spgan", "--pyspgan", str(published["pyspgan"]), "--source-domain", "B", "--output",
                     str(out["pyspgan_source_B"])]) == 0
    assert _convert(["spgan", "--openunreid", str(published["openunreid"]), "--output", str(out["openunreid"])]) == 0
    assert _convert(["espgan", "--checkpoint", str(published["espgan"]), "--output", str(out["espgan"])]) == 0
    assert _convert(["espgan", "--checkpoint", str(published["espgan"]), "--ide", str(published["ide"]),
                     "--output", str(out["espgan_ide"])]) == 0
    assert _convert(["espgan", "--ide", str(published["ide"]), "--output", str(out["ide_only"])]) == 0
    return out


def _model(config, weights, *opts):
    cfg = merge_config(get_cfg(), str(CONFIGS / config), ["MODEL.DEVICE", "cpu", *opts])
    return load_model_for_inference(cfg, str(weights))  # strict fit check: every tensor set


def _pixels(x):
    return x * 127.5 + 127.5  # expected.pt's x is in the mean 0.5 / std 0.5 space


def _normalised(images):
    return (images - 127.5) / 127.5


@pytest.mark.parametrize("config_padding", ["pyspgan", "openunreid"])
def test_pyspgan_checkpoint_reproduces_py_spgan(converted, expected, config_padding):
    """G_out, D_pyspgan (32x16) and M_out, whatever padding the config names: the file brings its own."""
    model = _model("market2duke.yml", converted["pyspgan"], "MODEL.SPGAN.DISCRIMINATOR.PADDING", config_padding)
    x = _pixels(expected["x"])
    with torch.no_grad():
        errors = {
            "G_out (Gb: source -> target)": relative_error(_normalised(model.translate(x, "source_to_target")),
                                                           expected["G_out"]),
            "D_pyspgan (Da: source)": relative_error(model.discriminate(x, "source"), expected["D_pyspgan"]),
            "M_out": relative_error(model.embed(x), expected["M_out"]),
            "eval forward": relative_error(model({"images": x}), expected["M_out"]),
        }
        other = relative_error(_normalised(model.translate(x, "target_to_source")), expected["G_out"])
    assert model.dis_s.variant == model.dis_t.variant == "pyspgan"
    assert max(errors.values()) < TOL, errors
    assert other > 0.1  # Ga (B -> A) has other weights: the directions are not swapped


def test_pyspgan_with_source_domain_b_swaps_the_roles(converted, expected):
    model = _model("market2duke.yml", converted["pyspgan_source_B"])
    x = _pixels(expected["x"])
    with torch.no_grad():
        errors = {"G_out (Gb: now target -> source)": relative_error(
                      _normalised(model.translate(x, "target_to_source")), expected["G_out"]),
                  "D_pyspgan (Da: now target)": relative_error(model.discriminate(x, "target"),
                                                               expected["D_pyspgan"])}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("config_padding", ["pyspgan", "openunreid"])
def test_openunreid_checkpoint_reproduces_openunreid(converted, expected, config_padding):
    """G_out, D_ounreid (30x14) and M_out from OpenUnReID's five files, whatever padding the config names."""
    model = _model("market2duke.yml", converted["openunreid"], "MODEL.SPGAN.DISCRIMINATOR.PADDING", config_padding)
    x = _pixels(expected["x"])
    with torch.no_grad():
        d = model.discriminate(x, "source")
        errors = {
            "G_out (G_A: source -> target)": relative_error(_normalised(model.translate(x)), expected["G_out"]),
            "D_ounreid (D_A: source)": relative_error(d, expected["D_ounreid"]),
            "M_out": relative_error(model.embed(x), expected["M_out"]),
        }
        other = relative_error(_normalised(model.translate(x, "target_to_source")), expected["G_out"])
    assert tuple(d.shape) == (2, 1, 30, 14) and model.dis_t.variant == "openunreid"
    assert max(errors.values()) < TOL, errors
    assert other > 0.1


@pytest.mark.parametrize("which", ["espgan", "espgan_ide"])
def test_espgan_checkpoint_reproduces_espgan(converted, expected, which):
    """The GANs (DataParallel in the file) and the IDE's pool, bottleneck and logits (the checkpoint's IDE, or
    the --ide file's)."""
    model = _model("espgan_market2duke.yml", converted[which], "MODEL.HEADS.NUM_CLASSES", "751")
    x = _pixels(expected["x"])
    with torch.no_grad():
        out = model.identify(x)
        errors = {
            "G_out": relative_error(_normalised(model.translate(x)), expected["G_out"]),
            "D_pyspgan": relative_error(model.discriminate(x, "source"), expected["D_pyspgan"]),
            "ide_pool": relative_error(out["pool"], expected["ide_pool"]),
            "ide_fc": relative_error(out["bottleneck"], expected["ide_fc"]),
            "ide_logits": relative_error(out["logits"], expected["ide_logits"]),
            "ide forward": relative_error(model.ide(_normalised(x)), expected["ide_logits"]),
            "eval forward (pool5)": relative_error(model(x), expected["ide_pool"]),
        }
    assert max(errors.values()) < TOL, errors


def test_ide_only_file_loads_with_the_named_partial_load(converted, expected):
    from fastreid_gan.checkpoint_io import WeightsMismatchError

    with pytest.raises(WeightsMismatchError, match="does not fit"):
        _model("espgan_market2duke.yml", converted["ide_only"], "MODEL.HEADS.NUM_CLASSES", "751")
    model = _model("espgan_market2duke.yml", converted["ide_only"], "MODEL.HEADS.NUM_CLASSES", "751",
                   "MODEL.WEIGHTS_KEEP_INIT", "['gen_st.', 'gen_ts.', 'dis_s.', 'dis_t.']")
    with torch.no_grad():
        assert relative_error(model.identify(_pixels(expected["x"]))["logits"], expected["ide_logits"]) < TOL


def test_converted_files_record_their_variant(converted):
    for name, code in (("pyspgan", 1), ("openunreid", 0), ("espgan", 1)):
        state = torch.load(str(converted[name]), map_location="cpu", weights_only=True)["model"]
        assert int(state["dis_s.padding_variant"]) == int(state["dis_t.padding_variant"]) == code, name


# --------------------------------------------------------------------------- bad input
def _case_args(case, published, converted, tmp_path):
    p = published
    if case == "espgan-as-pyspgan":
        return ["spgan", "--pyspgan", str(p["espgan"])], "--pyspgan", "convert it with 'tools/convert_official.py espgan"
    if case == "pyspgan-as-espgan":
        return ["espgan", "--checkpoint", str(p["pyspgan"])], "--checkpoint", "spgan --pyspgan"
    if case == "fdgan-file":
        f = tmp_path / "100_net_E.pth"
        torch.save({"module.base_model.base.conv1.weight": torch.zeros(64, 3, 7, 7)}, str(f))
        return ["spgan", "--pyspgan", str(f)], "--pyspgan", "lacks ['Ga', 'Gb', 'Da', 'Db', 'Me']"
    if case == "converted":
        return ["spgan", "--pyspgan", str(converted["pyspgan"])], "--pyspgan", "fastreid-gan checkpoint already"
    if case == "empty":
        f = tmp_path / "Epoch_(1).ckpt"
        f.write_bytes(b"")
        return ["spgan", "--pyspgan", str(f)], "--pyspgan", "empty"
    if case == "swapped-nets":
        obj = torch.load(str(p["pyspgan"]), map_location="cpu", weights_only=True)
        obj["Ga"], obj["Da"] = obj["Da"], obj["Ga"]
        f = tmp_path / "Epoch_(2).ckpt"
        torch.save(obj, str(f))
        return ["spgan", "--pyspgan", str(f)], "--pyspgan", "holds the weights of a discriminator, not a generator"
    if case == "openunreid-missing-file":
        d = tmp_path / "work_dir"
        d.mkdir()
        for f in p["openunreid"].iterdir():
            if f.name != "checkpoint_Metric.pth":
                (d / f.name).write_bytes(f.read_bytes())
        return ["spgan", "--openunreid", str(d)], "--openunreid", "lacks ['checkpoint_Metric.pth']"
    if case == "openunreid-D-as-G":
        d = tmp_path / "work_dir"
        d.mkdir()
        for f in p["openunreid"].iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        (d / "checkpoint_G_A.pth").write_bytes((p["openunreid"] / "checkpoint_D_B.pth").read_bytes())
        return ["spgan", "--openunreid", str(d)], "checkpoint_G_A.pth", "discriminator, not a generator"
    if case == "dgnet-id-as-ide":
        f = tmp_path / "id_00100000.pt"
        torch.save({"model.conv1.weight": torch.zeros(64, 3, 7, 7), "classifier1.add_block.0.weight": torch.zeros(1)},
                   str(f))
        return ["espgan", "--ide", str(f)], "--ide", "DG-Net appearance encoder"
    if case == "truncated-generator":
        obj = torch.load(str(p["pyspgan"]), map_location="cpu", weights_only=True)
        del obj["Gb"]["ls.16.weight"]
        f = tmp_path / "Epoch_(3).ckpt"
        torch.save(obj, str(f))
        return ["spgan", "--pyspgan", str(f)], "entry 'Gb'", "lacks 1 tensors"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["espgan-as-pyspgan", "pyspgan-as-espgan", "fdgan-file", "converted", "empty",
                                  "swapped-nets", "openunreid-missing-file", "openunreid-D-as-G", "dgnet-id-as-ide",
                                  "truncated-generator"])
def test_a_wrong_file_is_named_and_nothing_is_written(published, converted, tmp_path, case, capsys):
    argv, names, says = _case_args(case, published, converted, tmp_path)
    out = tmp_path / "out.pth"
    assert _convert(argv + ["--output", str(out)]) == 2
    message = capsys.readouterr().err
    assert names in message and says in message, message
    assert not out.exists()


def test_espgan_needs_a_file(tmp_path, capsys):
    assert _convert(["espgan", "--output", str(tmp_path / "out.pth")]) == 2
    assert "give --checkpoint" in capsys.readouterr().err
