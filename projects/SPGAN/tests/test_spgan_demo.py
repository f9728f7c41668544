"""``make demo-spgan`` (``projects/SPGAN/tools/demo.py``): its commands, in order, with the tools replaced by a
recorder (the real run takes minutes: README), its eSPGAN guard, its table, its translation grid (a random-init
4-filter SPGAN on the tiny synthetic presets) and the Makefile target."""
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.model_loading import inference_config

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "projects" / "SPGAN" / "tools" / "demo.py"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture()
def demo(monkeypatch):
    spec = importlib.util.spec_from_file_location("spgan_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _option(cmd, key):
    return cmd[cmd.index(key) + 1]


def _fake_tools(demo, monkeypatch, calls):
    """Replace ``run`` and the grid: record each command, write what the real tool would leave behind."""
    def fake_run(cmd, log, label, keys=()):
        calls.append((label, list(cmd), dict(os.environ)))
        if "--output" in cmd:  # translate.py
            return
        if "--json" in cmd:  # translation_quality.py
            quality = {"style": {"source_to_target": 90.0, "translated_to_target": 30.0 + len(calls)},
                       "identity": {"reference": {"Rank-1": 80.0, "mAP": 60.0},
                                    "translated": {"Rank-1": 70.0 + len(calls), "mAP": 50.0}}}
            Path(_option(cmd, "--json")).write_text(json.dumps(quality))
            return
        out = Path(_option(cmd, "OUTPUT_DIR"))
        out.mkdir(parents=True, exist_ok=True)
        result = {"SyntheticMarket": {"Rank-1": 10.0 + len(calls), "mAP": 5.0 + len(calls)}}
        (out / "metrics.json").write_text(json.dumps(result))
        if label == "eSPGAN":
            (out / "stages.json").write_text(json.dumps({"done": {"pretrain": result, "joint": result}}))

    monkeypatch.setattr(demo, "run", fake_run)
    monkeypatch.setattr(demo, "translation_grid", lambda spgan_dir, weights, path, **datasets: path)
    monkeypatch.setenv("SPGAN_TRANSLATED_DIR", "")  # main() sets it: restored after the test


def test_the_demo_runs_each_step_on_the_previous_ones_outputs(demo, monkeypatch, tmp_path, capsys):
    calls = []
    _fake_tools(demo, monkeypatch, calls)
    monkeypatch.setattr("sys.argv", ["demo.py", "--output-dir", str(tmp_path)])
    demo.main()
    labels = [label for label, _, _ in calls]
    assert labels == ["source IDE+", "direct transfer + LMP", "SPGAN", "translate (SPGAN)",
                      "IDE+ on SPGAN translations", "SPGAN + LMP", "eSPGAN", "eSPGAN + LMP"]
    cmds = {label: cmd for label, cmd, _ in calls}
    source_weights = str(tmp_path / "source_ide" / "model_final.pth")
    spgan_weights = str(tmp_path / "spgan" / "model_final.pth")
    translated = str(tmp_path / "spgan_translated")
    # SPGAN: the demo schedule; translate: its weights, the source's training split, into the folder the
    # feature learner reads (SPGAN_TRANSLATED_DIR, set for every command)
    assert _option(cmds["SPGAN"], "SOLVER.GAN.MAX_ITER") == "300"
    translate = cmds["translate (SPGAN)"]
    assert _option(translate, "--weights") == spgan_weights
    assert _option(translate, "--output") == translated
    assert _option(translate, "--dataset") == "SyntheticDuke"
    assert all(env["SPGAN_TRANSLATED_DIR"] == translated for _, _, env in calls[labels.index("translate (SPGAN)"):])
    # IDE+ fine-tunes the source model; eSPGAN's feature learner starts from its backbone
    assert cmds["IDE+ on SPGAN translations"][3].endswith("ide_synthetic.yml")
    assert _option(cmds["IDE+ on SPGAN translations"], "MODEL.WEIGHTS") == source_weights
    assert _option(cmds["eSPGAN"], "MODEL.BACKBONE.PRETRAIN_PATH") == source_weights
    # LMP: each model's own run config and weights, --eval-only, 4 stripes
    for label, run_dir in [("direct transfer + LMP", "source_ide"), ("SPGAN + LMP", "spgan_ide"),
                           ("eSPGAN + LMP", "espgan/joint")]:
        cmd = cmds[label]
        assert "--eval-only" in cmd and cmd.index("--eval-only") < cmd.index("OUTPUT_DIR")  # flags first
        assert _option(cmd, "TEST.LMP.ENABLED") == "True"
        assert _option(cmd, "TEST.LMP.PARTS") == "4"
        assert _option(cmd, "--config-file") == str(tmp_path / run_dir / "config.yaml")
        assert _option(cmd, "MODEL.WEIGHTS") == str(tmp_path / run_dir / "model_final.pth")
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert [re.split(r"\s*\|\s*", line)[1] for line in table] == ["method", "direct transfer", "SPGAN", "eSPGAN"]
    results = json.loads((tmp_path / "demo_results.json").read_text())
    assert set(results["rows"]) == {"direct transfer", "SPGAN", "eSPGAN"} and results["total_s"] >= 0


def test_without_the_espgan_config_the_step_is_skipped_with_a_message(demo, monkeypatch, tmp_path, capsys):
    calls = []
    _fake_tools(demo, monkeypatch, calls)
    monkeypatch.setattr(demo, "ESPGAN_CONFIG", tmp_path / "espgan_synthetic.yml")
    monkeypatch.setattr("sys.argv", ["demo.py", "--output-dir", str(tmp_path)])
    demo.main()
    assert "eSPGAN" not in [label for label, _, _ in calls]
    printed = capsys.readouterr().out
    assert "skipped: " in printed and "espgan_synthetic.yml does not exist" in printed
    espgan_row = next(line for line in printed.splitlines() if line.startswith("| eSPGAN"))
    assert espgan_row.count("-") == 4


def test_a_failed_espgan_run_keeps_the_other_results(demo, monkeypatch, tmp_path, capsys):
    calls = []
    _fake_tools(demo, monkeypatch, calls)
    recorded = demo.run

    def failing_espgan(cmd, log, label, keys=()):
        if label == "eSPGAN":
            raise SystemExit("Command failed (1); last lines of stdout.txt: ...")
        recorded(cmd, log, label, keys)

    monkeypatch.setattr(demo, "run", failing_espgan)
    monkeypatch.setattr("sys.argv", ["demo.py", "--output-dir", str(tmp_path)])
    demo.main()
    printed = capsys.readouterr().out
    assert "eSPGAN failed" in printed and "| SPGAN" in printed


def test_the_translation_grid(demo, datasets_root, tmp_path):
    """Rows source, translated, reconstructed, real target; 8 people a row, at the translator's size."""
    torch.set_num_threads(1)
    cfg = merge_config(get_cfg(), str(REPO / "projects" / "SPGAN" / "configs" / "synthetic.yml"), [
        "MODEL.DEVICE", "cpu", "MODEL.SPGAN.GENERATOR.NGF", "4", "MODEL.SPGAN.GENERATOR.N_BLOCKS", "1",
        "MODEL.SPGAN.DISCRIMINATOR.NDF", "4", "DATASETS.NAMES", '("SyntheticDukeTiny",)'])
    torch.manual_seed(0)
    model = build_model(inference_config(cfg))
    (tmp_path / "config.yaml").write_text(cfg.dump())
    torch.save({"model": model.state_dict(), "meta_architecture": "SPGAN"}, str(tmp_path / "model_final.pth"))
    path = demo.translation_grid(tmp_path, tmp_path / "model_final.pth", tmp_path / "grid.png", samples=4,
                                 source="SyntheticDukeTiny", target="SyntheticMarketTiny")
    width, height = Image.open(path).size
    assert (width, height) == (2 + 4 * (64 + 2), 2 + 4 * (128 + 2))


def test_the_makefile_target_runs_the_demo():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^\.PHONY:.*\bdemo-spgan\b", makefile, re.M)
    target = re.search(r"^demo-spgan: venv\n\t(.*)$", makefile, re.M)
    assert target and "projects/SPGAN/tools/demo.py --output-dir logs/demo_spgan" in target.group(1)


def test_quick_shortens_every_step(demo, monkeypatch, tmp_path, capsys):
    calls = []
    _fake_tools(demo, monkeypatch, calls)
    monkeypatch.setattr("sys.argv", ["demo.py", "--quick", "--output-dir", str(tmp_path)])
    demo.main()
    cmds = {label: cmd for label, cmd, _ in calls}

    def last(cmd, key):  # yacs: the last override of a key wins
        return cmd[len(cmd) - 1 - cmd[::-1].index(key) + 1]

    assert last(cmds["source IDE+"], "SOLVER.MAX_EPOCH") == "1"
    assert last(cmds["SPGAN"], "SOLVER.GAN.MAX_ITER") == "12"
    assert last(cmds["IDE+ on SPGAN translations"], "SOLVER.MAX_EPOCH") == "1"
    assert last(cmds["eSPGAN"], "SOLVER.GAN.MAX_ITER") == "8"
    assert "the figures mean nothing" in capsys.readouterr().out


def test_reuse_skips_the_finished_steps(demo, monkeypatch, tmp_path, capsys):
    calls = []
    _fake_tools(demo, monkeypatch, calls)
    monkeypatch.setattr("sys.argv", ["demo.py", "--output-dir", str(tmp_path)])
    demo.main()
    (tmp_path / "spgan" / "model_final.pth").write_text("")  # the recorder writes no checkpoints
    first = len(calls)
    monkeypatch.setattr("sys.argv", ["demo.py", "--reuse", "--output-dir", str(tmp_path)])
    demo.main()
    assert [label for label, _, _ in calls[first:]] == ["translate (SPGAN)"]  # it leaves no translation.json
    assert "reusing" in capsys.readouterr().out


def test_table_1_variants_train_their_own_translators_and_feature_learners(demo, monkeypatch, tmp_path, capsys):
    """CycleGAN (no identity loss, no contrastive term, SiaNet never trained) and CycleGAN + L_ide, each in its own
    folders, each feature learner reading its own translation; --measure-translation measures each with the
    source model."""
    calls = []
    _fake_tools(demo, monkeypatch, calls)
    monkeypatch.setattr("sys.argv", ["demo.py", "--variants", "cyclegan,cyclegan_identity,spgan", "--skip-espgan",
                                     "--measure-translation", "--output-dir", str(tmp_path)])
    demo.main()
    cmds = {label: (cmd, env) for label, cmd, env in calls}
    cyclegan, _ = cmds["CycleGAN"]
    assert _option(cyclegan, "MODEL.SPGAN.LOSS_WEIGHTS.IDENTITY") == "[0.0]"
    assert _option(cyclegan, "MODEL.SPGAN.LOSS_WEIGHTS.CONTRASTIVE") == "[0.0]"
    assert int(_option(cyclegan, "MODEL.SPGAN.SCHEDULE.METRIC_START_EPOCH")) * 50 > int(
        _option(cyclegan, "SOLVER.GAN.MAX_ITER"))
    with_identity, _ = cmds["CycleGAN + L_ide"]
    assert "MODEL.SPGAN.LOSS_WEIGHTS.IDENTITY" not in with_identity
    assert _option(with_identity, "MODEL.SPGAN.LOSS_WEIGHTS.CONTRASTIVE") == "[0.0]"
    assert "MODEL.SPGAN.LOSS_WEIGHTS.CONTRASTIVE" not in cmds["SPGAN"][0]
    for label, folder in [("CycleGAN", "cyclegan"), ("CycleGAN + L_ide", "cyclegan_identity"), ("SPGAN", "spgan")]:
        translate, _ = cmds[f"translate ({label})"]
        assert _option(translate, "--weights") == str(tmp_path / folder / "model_final.pth")
        assert _option(translate, "--output") == str(tmp_path / f"{folder}_translated")
        ide, env = cmds[f"IDE+ on {label} translations"]
        assert env["SPGAN_TRANSLATED_DIR"] == str(tmp_path / f"{folder}_translated")
        assert _option(ide, "OUTPUT_DIR") == str(tmp_path / f"{folder}_ide")
        quality, _ = cmds[f"{label} translation quality"]
        assert _option(quality, "--translated") == str(tmp_path / f"{folder}_translated")
        assert _option(quality, "--reid-weights") == str(tmp_path / "source_ide" / "model_final.pth")
    printed = capsys.readouterr().out
    table = [re.split(r"\s*\|\s*", line)[1] for line in printed.splitlines() if line.startswith("| ")]
    assert table == ["method", "direct transfer", "CycleGAN", "CycleGAN + L_ide", "SPGAN", "eSPGAN",
                     "translator", "CycleGAN", "CycleGAN + L_ide", "SPGAN"]
    results = json.loads((tmp_path / "demo_results.json").read_text())
    assert results["variants"] == ["cyclegan", "cyclegan_identity", "spgan"]
    assert results["rows"]["CycleGAN"]["translation"]["style"]["source_to_target"] == 90.0


def test_the_other_direction_swaps_source_and_target_in_every_step(demo, monkeypatch, tmp_path):
    calls = []
    _fake_tools(demo, monkeypatch, calls)
    monkeypatch.setattr("sys.argv", ["demo.py", "--direction", "market2duke", "--output-dir", str(tmp_path)])
    demo.main()
    cmds = {label: cmd for label, cmd, _ in calls}

    def last(cmd, key):
        return cmd[len(cmd) - 1 - cmd[::-1].index(key) + 1]

    assert last(cmds["source IDE+"], "DATASETS.NAMES") == '("SyntheticMarket",)'
    for label in ("source IDE+", "IDE+ on SPGAN translations", "eSPGAN"):
        assert last(cmds[label], "DATASETS.TESTS") == '("SyntheticDuke",)'
    for label in ("SPGAN", "eSPGAN"):
        assert last(cmds[label], "DATASETS.NAMES") == '("SyntheticMarket",)'
        assert last(cmds[label], "MODEL.SPGAN.TARGET_DATASET") == "SyntheticDuke"
    assert _option(cmds["translate (SPGAN)"], "--dataset") == "SyntheticMarket"
    results = json.loads((tmp_path / "demo_results.json").read_text())
    assert (results["source"], results["target"]) == ("SyntheticMarket", "SyntheticDuke")


def test_an_unknown_variant_is_refused(demo, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("sys.argv", ["demo.py", "--variants", "spgan,stargan", "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        demo.main()
    assert "--variants 'spgan,stargan': choose from cyclegan, cyclegan_identity, spgan" in capsys.readouterr().err
