"""tools/cross_domain_eval.py (fastreid_gan.evaluation.cross_domain): the matrix of models x target datasets x LMP on
the tiny synthetic datasets, against direct evaluations through the evaluator (tools/train_net.py --eval-only's
path, multi-dataset DATASETS.TESTS), models of every method, the outputs, bad input, one model in memory at a time."""
import json
import runpy
import shlex
import weakref
from pathlib import Path

import pytest
import torch
from PIL import Image

import fastreid_gan  # noqa: F401  (compat fixes and registrations first)
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.evaluation import cross_domain
from fastreid_gan.evaluation.cross_domain import (CrossDomainInputError, LMPSetting, ModelSpec, parse_model_spec,
                                                  run_cross_domain, write_outputs)
from fastreid_gan.model_loading import inference_config
from tiny_configs import DGNET

pytestmark = pytest.mark.filterwarnings("ignore:Cython .* evaluation")
REPO = Path(__file__).resolve().parents[1]
CLI = runpy.run_path(str(REPO / "tools" / "cross_domain_eval.py"), run_name="cross_domain_eval_tool")["main"]

MARKET, DUKE = "SyntheticMarketTiny", "SyntheticDukeTiny"
DATASETS = [MARKET, DUKE]
# every model: CPU, no workers, small batches (ResNet-18 at 64x32: a 4-row map)
OPTS = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "32"]

BASELINE = """_BASE_: {repo}/configs/Synthetic/{base}
MODEL:
  HEADS:
    NUM_CLASSES: 5
DATASETS:
  NAMES: ("{train}",)
  TESTS: ("{train}",)
OUTPUT_DIR: {out}
"""
FDGAN = """_BASE_: {repo}/projects/FDGAN/configs/market.yml
MODEL:
  BACKBONE: {{DEPTH: 18x, PRETRAIN: False, LAST_STRIDE: 1}}
  FDGAN:
    GENERATOR: {{NGF: 8, POSE_DIM: 16, NOISE_DIM: 8}}
    POSE_DISCRIMINATOR: {{NDF: 8}}
INPUT:
  SIZE_TRAIN: [64, 32]
  SIZE_TEST: [64, 32]
DATASETS:
  NAMES: ("{train}",)
  TESTS: ("{train}",)
OUTPUT_DIR: {out}
"""
ESPGAN = """_BASE_: {repo}/projects/SPGAN/configs/espgan_market2duke.yml
MODEL:
  BACKBONE: {{DEPTH: 18x}}
  HEADS: {{NUM_CLASSES: 5}}
INPUT:
  SIZE_TRAIN: [64, 32]
  SIZE_TEST: [64, 32]
DATASETS:
  NAMES: ("{train}",)
  TESTS: ("{train}",)
OUTPUT_DIR: {out}
"""


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _write_model(folder: Path, name: str, template: str, seed: int, **fields) -> ModelSpec:
    """A config file and a checkpoint of its model with seeded random weights (not any fresh initialisation)."""
    config = folder / f"{name}.yml"
    config.write_text(template.format(repo=REPO, out=folder / "runs" / name, **fields))
    torch.manual_seed(seed)
    model = build_model(inference_config(merge_config(get_cfg(), str(config), OPTS)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    weights = folder / f"{name}.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, str(weights))
    return ModelSpec(name, str(config), str(weights))


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """Two ResNet-18 baselines, 'market' (trained on the Market-style tiny set) and 'duke'."""
    folder = tmp_path_factory.mktemp("models")
    return [_write_model(folder, "market", BASELINE, 1, base="baseline_market.yml", train=MARKET),
            _write_model(folder, "duke", BASELINE, 2, base="baseline_duke.yml", train=DUKE)]


def _direct(spec: ModelSpec, lmp: LMPSetting, tmp_path: Path):
    """The same model and datasets through tools/train_net.py --eval-only's code path (both datasets at once)."""
    from fastreid_gan.runner import evaluate_only

    opts = OPTS + ["DATASETS.TESTS", f'("{MARKET}", "{DUKE}")', "OUTPUT_DIR", str(tmp_path / "direct")]
    opts += ["MODEL.WEIGHTS", spec.weights] + lmp.overrides()
    cfg = merge_config(get_cfg(), spec.config_file, opts)
    cfg.freeze()
    return evaluate_only(cfg)


def test_matrix_has_every_cell_and_equals_direct_evaluations(datasets_root, baselines, tmp_path):
    lines = []
    result = run_cross_domain(baselines, DATASETS, lmp=True, lmp_parts=[2], opts=OPTS, progress=lines.append)

    settings = [LMPSetting(), LMPSetting(2, "max")]
    assert [(r.model, r.lmp) for r in result.rows] == [(m.name, s) for m in baselines for s in settings]
    cell_lines = [line for line in lines if " x Synthetic" in line]
    assert len(cell_lines) == 8 and all(line.endswith(" s)") for line in cell_lines)  # one line per cell, timed
    for spec in baselines:
        for setting in settings:
            direct = _direct(spec, setting, tmp_path)
            for dataset in DATASETS:
                cell = result.cell(spec.name, dataset, setting)
                assert set(cell.metrics) == set(direct[dataset]) >= {"Rank-1", "Rank-5", "mAP", "mINP"}
                for key, value in direct[dataset].items():
                    assert cell.metrics[key] == pytest.approx(value, abs=1e-9), (spec.name, setting, dataset, key)
                assert cell.in_domain == (dataset == (MARKET if spec.name == "market" else DUKE))
                assert cell.seconds > 0
    for spec in baselines:  # LMP rows are other features: other numbers
        for dataset in DATASETS:
            assert result.cell(spec.name, dataset).metrics != result.cell(spec.name, dataset, settings[1]).metrics
    assert result.cell("market", DUKE).metrics != result.cell("duke", DUKE).metrics


def test_cli_writes_the_matrix_and_each_rows_command_gives_its_numbers(datasets_root, baselines, tmp_path, capsys):
    out = tmp_path / "out"
    models = [f"--model={s.name}={s.config_file}:{s.weights}" for s in baselines[:1]]
    rc = CLI(models + ["--datasets", ",".join(DATASETS), "--lmp", "--lmp-parts", "4",
                                          "--output-dir", str(out)] + OPTS)
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.count(" s)") >= 4 and "done in" in printed
    assert sorted(p.name for p in out.iterdir()) == ["heatmap.png", "matrix.json", "matrix.md"]  # no staging left

    data = json.loads((out / "matrix.json").read_text())
    assert data["datasets"] == DATASETS and data["overrides"] == OPTS
    assert [(m["weights"], m["meta_architecture"], m["train_datasets"]) for m in data["models"]] == [
        (baselines[0].weights, "Baseline", [MARKET])]
    assert data["models"][0]["feature_map_height"] == 4
    assert [(r["model"], r["lmp"]["parts"]) for r in data["rows"]] == [("market", None), ("market", 4)]
    for row in data["rows"]:
        assert set(row["cells"]) == set(DATASETS)
        assert all({"Rank-1", "Rank-10", "mAP", "mINP"} <= set(c["metrics"]) for c in row["cells"].values())

    # the recorded command is tools/train_net.py --eval-only with the same numbers
    from fastreid_gan.runner import argument_parser, evaluate_only, setup_cfg

    row = data["rows"][1]
    argv = shlex.split(row["command"])
    assert argv[:2] == ["python", "tools/train_net.py"] and "--eval-only" in argv
    args = argument_parser().parse_args(argv[2:] + ["OUTPUT_DIR", str(tmp_path / "replay")])
    replay = evaluate_only(setup_cfg(args))
    for dataset in DATASETS:
        assert replay[dataset] == pytest.approx(row["cells"][dataset]["metrics"], abs=1e-9)

    markdown = (out / "matrix.md").read_text()
    assert f"| model | LMP | {MARKET} | {DUKE} |" in markdown
    r1, m_ap = row["cells"][DUKE]["metrics"]["Rank-1"], row["cells"][DUKE]["metrics"]["mAP"]
    assert "| market | P=4 max | " in markdown and f"{r1:.1f} / {m_ap:.1f}" in markdown
    assert "†" in markdown  # in-domain cells are marked
    with Image.open(out / "heatmap.png") as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


def test_models_of_every_method_and_random_weights(datasets_root, tmp_path):
    """DG-Net (E_a), FD-GAN (E, with V's re-ranking on the LMP-off row), eSPGAN's feature learner and an untrained
    baseline in one matrix, each with and without LMP."""
    specs = [_write_model(tmp_path, "dgnet", DGNET, 3, train=MARKET),
             _write_model(tmp_path, "fdgan", FDGAN, 4, train=MARKET)]
    espgan = tmp_path / "espgan.yml"
    espgan.write_text(ESPGAN.format(repo=REPO, out=tmp_path / "runs", train=MARKET))
    floor = tmp_path / "floor.yml"
    floor.write_text(BASELINE.format(repo=REPO, out=tmp_path / "runs", base="baseline_market.yml", train=MARKET))
    specs += [parse_model_spec(f"espgan={espgan}:untrained"), parse_model_spec(f"floor={floor}:untrained")]
    lines = []
    result = run_cross_domain(specs, [DUKE], lmp=True, lmp_parts=[2], opts=OPTS, progress=lines.append)
    assert [(r.model, r.lmp.enabled) for r in result.rows] == [(s.name, on) for s in specs for on in (False, True)]
    assert [m.cfg.MODEL.META_ARCHITECTURE for m in result.models] == ["DGNet", "FDGAN", "ESPGAN", "Baseline"]
    for row in result.rows:
        assert row.skipped is None and set(row.cells) == {DUKE}
        assert 0.0 <= row.cells[DUKE].metrics["mAP"] <= 100.0
    assert all(m.supports_lmp for m in result.models)
    fdgan_off = result.cell("fdgan", DUKE).metrics
    assert "verified/mAP" in fdgan_off  # the FD-GAN config's published protocol (TEST.PAIR_RERANK)
    assert "verified/mAP" not in result.cell("fdgan", DUKE, LMPSetting(2, "max")).metrics
    for name in ("dgnet", "fdgan", "espgan", "floor"):
        assert result.cell(name, DUKE).metrics["mAP"] != result.cell(name, DUKE, LMPSetting(2, "max")).metrics["mAP"]
    assert "--untrained" in result.rows[6].command and "MODEL.WEIGHTS" not in result.rows[6].command
    # random weights are drawn as tools/train_net.py --untrained draws them: the same floor twice
    again = run_cross_domain(specs[3:], [DUKE], opts=OPTS, progress=lambda line: None)
    assert again.cell("floor", DUKE).metrics == result.cell("floor", DUKE).metrics


def test_a_model_without_lmp_support_gets_named_na_cells(datasets_root, baselines, monkeypatch, tmp_path):
    monkeypatch.setattr(cross_domain, "_feature_map_height", lambda model, cfg: None)  # as SPGAN's SiaNet model
    lines = []
    result = run_cross_domain(baselines[:1], [DUKE], lmp=True, lmp_parts=[2], opts=OPTS, progress=lines.append)
    off, on = result.rows
    assert off.skipped is None and DUKE in off.cells
    assert on.cells == {} and "does not support TEST.LMP" in on.skipped
    assert any("skipped" in line for line in lines)
    written = write_outputs(result, str(tmp_path / "out"))
    assert "n/a" in written["matrix.md"].read_text()
    assert json.loads(written["matrix.json"].read_text())["rows"][1]["cells"][DUKE] is None


def test_one_model_in_memory_at_a_time(datasets_root, baselines, monkeypatch):
    loaded = []
    load = cross_domain._load

    def tracked(prepared):
        assert all(ref() is None for ref in loaded), "a model is still alive when the next one is loaded"
        model = load(prepared)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(cross_domain, "_load", tracked)
    run_cross_domain(baselines, [DUKE], opts=OPTS, progress=lambda line: None)
    assert len(loaded) == 4  # each model: once checked, once evaluated
    import gc

    gc.collect()
    assert all(ref() is None for ref in loaded)


def _never_evaluate(*args, **kwargs):
    raise AssertionError("bad input must be refused before any evaluation")


@pytest.mark.parametrize("case, match", [
    ("missing_config", r"--model market: config file not found: .*nowhere.yml"),
    ("missing_weights", r"--model market: weights file not found: .*nowhere.pth"),
    ("no_weights", r"--model market: no weights: .* has no MODEL.WEIGHTS; give market=.*:/path/to/model_final.pth"),
    ("unknown_dataset", r"unknown dataset 'SyntheticDukeTiyn'\. Did you mean SyntheticDukeTiny"),
    ("weights_of_another_model", r"--model market: weights = '.*dgnet.pth' does not fit MODEL.META_ARCHITECTURE "
                                 r"'Baseline'"),
    ("too_many_parts", r"--model market: TEST.LMP.PARTS = 8 horizontal stripes, but the model's last feature map has "
                       r"only 4 rows at INPUT.SIZE_TEST 64x32: give --lmp-parts at most 4"),
    ("same_name", r"--model names must differ .*: market given more than once"),
    ("bad_spec", r"--model 'market': expected NAME=CONFIG\[:WEIGHTS\]"),
    ("bad_parts", r"--lmp-parts '4,x': .* integer >= 1"),
    ("unknown_key", r"--model market: Unknown config key 'TEST.LMP.PART'"),
    ("no_models", r"no models: give at least one --model"),
])
def test_bad_input_is_one_line_with_exit_code_2_and_nothing_written(datasets_root, baselines, tmp_path, capsys,
                                                                    monkeypatch, case, match):
    monkeypatch.setattr(cross_domain, "evaluate_on_test_datasets", _never_evaluate)
    market = baselines[0]
    spec = f"market={market.config_file}:{market.weights}"
    dgnet = _write_model(tmp_path, "dgnet", DGNET, 3, train=MARKET) if case == "weights_of_another_model" else None
    argv = {
        "missing_config": ["--model", f"market={tmp_path}/nowhere.yml:{market.weights}"],
        "missing_weights": ["--model", f"market={market.config_file}:{tmp_path}/nowhere.pth"],
        "no_weights": ["--model", f"market={market.config_file}"],
        "unknown_dataset": ["--model", spec, "--datasets", f"{MARKET},SyntheticDukeTiyn"],
        "weights_of_another_model": ["--model", f"market={market.config_file}:{dgnet.weights if dgnet else ''}"],
        "too_many_parts": ["--model", spec, "--lmp", "--lmp-parts", "4,8"],
        "same_name": ["--model", spec, "--model", spec],
        "bad_spec": ["--model", "market"],
        "bad_parts": ["--model", spec, "--lmp", "--lmp-parts", "4,x"],
        "unknown_key": ["--model", spec, "TEST.LMP.PART", "4"],
        "no_models": [],
    }[case]
    out = tmp_path / "out"
    rc = CLI(["--output-dir", str(out)] + argv + (OPTS if case != "unknown_key" else []))
    captured = capsys.readouterr()
    assert rc == 2
    message = captured.err.strip()
    assert message.startswith("error: ") and "\n" not in message
    import re

    assert re.search(match, message), message
    assert not out.exists()


def test_outputs_are_written_all_or_nothing(datasets_root, baselines, tmp_path, monkeypatch):
    result = run_cross_domain(baselines[:1], [DUKE], opts=OPTS, progress=lambda line: None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "matrix.md").write_text("an earlier matrix")

    def broken(result, path):
        Path(path).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(cross_domain, "_write_heatmap", broken)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(result, str(out))
    assert sorted(p.name for p in out.iterdir()) == ["matrix.md"]  # staging removed, nothing replaced
    assert (out / "matrix.md").read_text() == "an earlier matrix"


def test_parse_model_spec():
    assert parse_model_spec("a=cfg.yml:w:1.pth") == ModelSpec("a", "cfg.yml", "w:1.pth")
    assert parse_model_spec("a=cfg.yaml") == ModelSpec("a", "cfg.yaml", None)
    assert parse_model_spec("a=cfg.yml:untrained").untrained
    with pytest.raises(CrossDomainInputError, match="empty weights"):
        parse_model_spec("a=cfg.yml:")
