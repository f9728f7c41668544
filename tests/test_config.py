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
    with pytest.raises(ValueError, match=r"they hold \['--resume'\]: options such as --resume .* go before"):
        merge_config(get_cfg(), None, ["SOLVER.BASE_LR", "0.1", "--resume"])
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


def test_multi_process_runs_pick_a_free_port_unless_told(monkeypatch):
    """fastreid's --dist-url default is one fixed port: two 2-process runs on one machine would collide."""
    import torch.multiprocessing as mp

    from fastreid_gan.runner import launch_main

    urls = []
    monkeypatch.setattr(mp, "spawn", lambda fn, nprocs, args, daemon: urls.append(args[4]))
    argv = ["--config-file", "configs/Synthetic/baseline_market.yml", "--num-gpus", "2"]
    assert argument_parser().parse_args(argv).dist_url == "auto"
    launch_main(argv)
    launch_main(argv)
    launch_main(argv + ["--dist-url", "tcp://127.0.0.1:23456"])
    assert urls[0].startswith("tcp://127.0.0.1:") and urls[0] != urls[1]  # a free port each time
    assert urls[2] == "tcp://127.0.0.1:23456"


def test_a_training_config_yaml_loads_with_fastreids_get_cfg(tmp_path):
    """fastreid's deployment code reads a config with ``fastreid.config.get_cfg()`` + ``merge_from_file``; a
    config.yaml of this project (engine keys, DG-Net keys, optimizer nodes) loads that way after
    ``import fastreid_gan``, in a fresh interpreter; without the import the file says how to read it."""
    import subprocess
    import sys

    from fastreid_gan.runner import setup_logging_and_output

    config_file = str(REPO / "projects/DGNet/configs/synthetic.yml")
    cfg = setup_cfg(argparse.Namespace(config_file=config_file,
                                       opts=["OUTPUT_DIR", str(tmp_path), "SOLVER.GAN.OPTIMIZERS.GEN.BASE_LR", "0.002",
                                             "MODEL.BACKBONE.PRETRAIN", "False"],
                                       eval_only=False))
    setup_logging_and_output(cfg, argparse.Namespace(config_file=config_file, opts=[], eval_only=False))
    written = tmp_path / "config.yaml"
    assert written.read_text().startswith("# Written by fastreid-gan")
    script = (
        "import sys, fastreid_gan\n"
        "from fastreid.config import get_cfg\n"
        "from fastreid.modeling import build_model\n"
        "cfg = get_cfg(); cfg.merge_from_file(sys.argv[1])\n"
        "print(cfg.MODEL.META_ARCHITECTURE, cfg.SOLVER.GAN.OPTIMIZERS.GEN.BASE_LR, cfg.DATALOADER.POSITIVES)\n"
        "cfg.MODEL.BACKBONE.PRETRAIN = False; cfg.MODEL.HEADS.NUM_CLASSES = 3\n"
        "print(type(build_model(cfg)).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(written)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["DGNet", "0.002", "True", "DGNet"]
    # what is read equals what was written
    from fastreid.config import get_cfg as fastreid_get_cfg

    again = fastreid_get_cfg()
    again.merge_from_file(str(written))
    assert again.dump() == cfg.dump()


# ----------------------------------------------------------------------------- per-method defaults
def _toy_project_config(tmp_path: Path) -> Path:
    """A config of the test-only EngineToyGAN, whose "gen" network has other defaults than DG-Net's."""
    path = tmp_path / "toy.yml"
    path.write_text("MODEL:\n  META_ARCHITECTURE: EngineToyGAN\n"
                    "SOLVER:\n  GAN:\n    OPTIMIZERS:\n      DIS:\n        BASE_LR: 0.003\n")
    return path


@pytest.mark.parametrize("order", [("dgnet", "toy"), ("toy", "dgnet")])
def test_two_methods_with_a_gen_network_keep_their_own_defaults(order, tmp_path, monkeypatch):
    from dgnet.config import dgnet_optimizers
    from toy_gan import add_engine_toy_config, toy_optimizers

    import fastreid_gan.config as config_module

    adders = {"dgnet": load_projects()["dgnet"], "toy": add_engine_toy_config}
    monkeypatch.setattr(config_module, "load_projects", lambda: {name: adders[name] for name in order})

    toy = merge_config(get_cfg(), str(_toy_project_config(tmp_path))).SOLVER.GAN.OPTIMIZERS
    assert sorted(toy) == ["DIS", "GEN", "ID"]
    assert dict(toy.GEN) == dict(toy_optimizers()["gen"])  # Adam 2e-3, betas (0.5, 0.999)
    assert toy.DIS.BASE_LR == 0.003 and toy.DIS.NAME == "Adam" and tuple(toy.DIS.BETAS) == (0.5, 0.999)

    dgnet = merge_config(get_cfg(), str(REPO / "projects/DGNet/configs/market.yml")).SOLVER.GAN.OPTIMIZERS
    assert dict(dgnet.GEN) == dict(dgnet_optimizers()["gen"])  # Adam 1e-4, betas (0, 0.999), multistep
    assert dgnet.GEN != toy.GEN
    # the command line overrides a key of a method's node, and only that key
    dgnet = merge_config(get_cfg(), str(REPO / "projects/DGNet/configs/market.yml"),
                         ["SOLVER.GAN.OPTIMIZERS.GEN.BASE_LR", "2e-4"]).SOLVER.GAN.OPTIMIZERS
    assert dgnet.GEN.BASE_LR == 2e-4 and tuple(dgnet.GEN.BETAS) == (0.0, 0.999)


def test_a_project_that_changes_shared_keys_is_refused(monkeypatch):
    import fastreid_gan.config as config_module
    from fastreid_gan.engine import optimizer_node

    def writes_a_shared_node(cfg):
        cfg.SOLVER.GAN.OPTIMIZERS.GEN = optimizer_node(base_lr=1.0)

    def changes_a_fastreid_default(cfg):
        cfg.SOLVER.IMS_PER_BATCH = 3

    for adder, key in ((writes_a_shared_node, "SOLVER.GAN.OPTIMIZERS.GEN"),
                       (changes_a_fastreid_default, "SOLVER.IMS_PER_BATCH")):
        monkeypatch.setattr(config_module, "load_projects", lambda: {"bad": adder})
        with pytest.raises(ValueError, match=f"Project 'bad'.*{key}"):
            get_cfg()


def test_optimizer_node_value_of_the_wrong_kind_is_named(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("_BASE_: " + str(REPO / "projects/DGNet/configs/market.yml") + "\n"
                   "SOLVER:\n  GAN:\n    OPTIMIZERS:\n      GEN:\n        NESTEROV: maybe\n")
    with pytest.raises(ValueError, match="SOLVER.GAN.OPTIMIZERS.GEN.NESTEROV"):
        merge_config(get_cfg(), str(bad))


def test_generate_tool_dispatches_by_meta_architecture(capsys):
    import runpy

    tool = runpy.run_path(str(REPO / "tools" / "generate.py"), run_name="generate_tool")
    # the baseline registers no "generate" tool: a one-line error naming the methods that have one
    assert tool["main"](["--config-file", str(REPO / "configs/Synthetic/baseline_market.yml"),
                         "--weights", "unused.pth"]) == 2
    err = capsys.readouterr().err
    assert "'Baseline' has no 'generate' tool" in err and "DGNet" in err
    with pytest.raises(SystemExit):  # DG-Net's options are listed under the config's --help
        tool["main"](["--config-file", str(REPO / "projects/DGNet/configs/synthetic.yml"), "--help"])
    assert "--swap-accuracy" in capsys.readouterr().out
