"""Config building, clear config errors, device fallback and the pretrained-weights check."""
import argparse
import logging
from pathlib import Path

import pytest

import fastreid_gan  # noqa: F401
from fastreid_gan.config import ConfigKeyError, get_cfg, load_projects, merge_config
from fastreid_gan.runner import argument_parser, check_pretrained_weights, resolve_device, setup_cfg

REPO = Path(__file__).resolve().parents[1]


def test_projects_are_discovered_through_entry_points():
    projects = load_projects()
    assert "dgnet" in projects
    cfg = get_cfg()
    assert "DGNET" in cfg.MODEL
    assert "GAN" in cfg.SOLVER


def test_unknown_key_in_a_file_is_named_with_a_suggestion(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("SOLVER:\n  MAX_EPOHC: 3\n")
    with pytest.raises(ConfigKeyError) as info:
        merge_config(get_cfg(), str(bad))
    message = str(info.value)
    assert "SOLVER.MAX_EPOHC" in message and str(bad) in message and "SOLVER.MAX_EPOCH" in message


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigKeyError, match="MODEL.BACKBONE.DEPHT"):
        merge_config(get_cfg(), None, ["MODEL.BACKBONE.DEPHT", "18x"])


def test_odd_override_list_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ValueError, match="KEY VALUE"):
        merge_config(get_cfg(), None, ["SOLVER.BASE_LR"])
    with pytest.raises(FileNotFoundError, match="nope.yml"):
        merge_config(get_cfg(), str(tmp_path / "nope.yml"))


@pytest.mark.parametrize(
    "config",
    sorted(str(p.relative_to(REPO)) for p in REPO.glob("configs/**/*.yml"))
    + sorted(str(p.relative_to(REPO)) for p in REPO.glob("projects/*/configs/*.yml")),
)
def test_every_shipped_config_merges(config):
    cfg = merge_config(get_cfg(), str(REPO / config))
    assert cfg.MODEL.META_ARCHITECTURE


def test_cuda_without_cuda_falls_back_to_cpu_with_one_warning(caplog, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cuda"
    cfg.SOLVER.AMP.ENABLED = True
    with caplog.at_level(logging.WARNING, logger="fastreid_gan"):
        resolve_device(cfg)
    assert cfg.MODEL.DEVICE == "cpu" and cfg.SOLVER.AMP.ENABLED is False
    assert sum("CUDA is not available" in r.message for r in caplog.records) == 1


def test_pretrain_without_local_weights_says_where_to_put_them(tmp_path):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.PRETRAIN = True
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = ""
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.PRETRAIN_PATH"):
        check_pretrained_weights(cfg)
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(tmp_path / "resnet50.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_pretrained_weights(cfg)
    (tmp_path / "resnet50.pth").write_bytes(b"")
    check_pretrained_weights(cfg)


def test_command_line_takes_fastreids_arguments():
    args = argument_parser().parse_args(
        ["--config-file", "configs/Synthetic/baseline_market.yml", "--num-gpus", "2", "--resume",
         "SOLVER.MAX_EPOCH", "3"]
    )
    assert args.num_gpus == 2 and args.resume and args.opts == ["SOLVER.MAX_EPOCH", "3"]
    assert isinstance(args, argparse.Namespace) and hasattr(args, "dist_url") and hasattr(args, "machine_rank")
    cfg = setup_cfg(argparse.Namespace(config_file=str(REPO / args.config_file), opts=args.opts, eval_only=False))
    assert cfg.SOLVER.MAX_EPOCH == 3 and cfg.is_frozen()


def test_setup_cfg_lists_every_package():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    listed = {p.strip() for p in parser["options"]["packages"].splitlines() if p.strip() and not p.startswith("#")}
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "fastreid_gan").rglob("__init__.py")}
    found |= {p.parent.name for p in REPO.glob("projects/*/*/__init__.py")}
    assert found <= listed, f"packages missing from setup.cfg: {sorted(found - listed)}"
