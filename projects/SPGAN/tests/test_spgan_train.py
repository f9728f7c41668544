"""SPGAN training at CPU size (``configs/synthetic.yml`` shrunk further: SyntheticDukeTiny -> SyntheticMarketTiny,
4-filter networks, batch 2): the two-domain stream, the published schedule, every network learning, exact resume
with the image pools, bad input, two gloo processes, and one full-size iteration (``market2duke.yml``)."""
import argparse
import json
import os
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.data.datasets import SyntheticDukeTiny
from fastreid_gan.engine import GANTrainer
from fastreid_gan.runner import main
from spgan.data import build_two_domain_loader
from spgan.spgan import contrastive_loss

torch.set_num_threads(1)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["MODEL.DEVICE", "cpu", "DATASETS.NAMES", "('SyntheticDukeTiny',)", "MODEL.SPGAN.TARGET_DATASET",
        "SyntheticMarketTiny", "MODEL.SPGAN.GENERATOR.NGF", "4", "MODEL.SPGAN.GENERATOR.N_BLOCKS", "1",
        "MODEL.SPGAN.DISCRIMINATOR.NDF", "4", "MODEL.SPGAN.METRIC.CHANNELS", "[4, 8, 8]",
        "MODEL.SPGAN.METRIC.HIDDEN", "8", "MODEL.SPGAN.METRIC.EMBED_DIM", "8", "MODEL.SPGAN.POOL_SIZE", "3",
        "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
        "SEED", "3", "SOLVER.GAN.LOG_PERIOD", "0", "SOLVER.GAN.VIS_PERIOD", "0", "SOLVER.GAN.CHECKPOINT_PERIOD", "0",
        "SOLVER.GAN.MAX_ITER", "4"]
NETS = ("gen_st", "gen_ts", "dis_s", "dis_t", "sianet")


def _cfg(tmp_path, *opts, config="synthetic.yml"):
    return merge_config(get_cfg(), str(CONFIGS / config), TINY + ["OUTPUT_DIR", str(tmp_path)] + list(opts))


def _trainer(tmp_path, *opts, resume=False):
    if not resume:
        torch.manual_seed(0)  # as the runner seeds a run (SEED): the same initial weights
    trainer = GANTrainer(_cfg(tmp_path, *opts))
    trainer.resume_or_load(resume=resume)
    return trainer


def _iterations(trainer, key):
    return [int(it) for _, it in trainer.storage.history(key).values()] if key in trainer.storage.histories() else []


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------------ data
def test_two_domain_stream_is_unaligned_and_deterministic(datasets_root, tmp_path):
    cfg = _cfg(tmp_path, "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "0")
    loader = build_two_domain_loader(cfg)
    sampler = loader.batch_sampler
    source, target = loader.dataset.source, loader.dataset.target
    assert sampler.epoch_iters == min(len(source), len(target)) // 2  # the published epoch
    assert sampler.samples_per_pass == sampler.epoch_iters * 2
    assert loader.dataset.num_classes == source.num_classes  # the source's identities
    from fastreid.modeling import build_model

    assert build_model(cfg).epoch_iters == sampler.epoch_iters  # the model's schedule reads the same epoch
    batches = [b for _, b in zip(range(3), loader)]
    assert batches[0]["images"].shape == batches[0]["target_images"].shape == (2, 3, 128, 64)
    assert all("synthetic-duke-tiny" in p for b in batches for p in b["img_paths"])
    assert all("synthetic-market-tiny" in p for b in batches for p in b["target_img_paths"])
    # two independent shuffles: the source image does not decide the target image
    keys = [k for b in range(40) for k in sampler.keys(b)]
    partners = {}
    for s, t, _ in keys:
        partners.setdefault(s, set()).add(t)
    assert any(len(v) > 1 for v in partners.values()) or len({t for _, t, _ in keys}) > len(source)
    # a pure function of (seed, batch): a resumed stream gives the same batches
    again = build_two_domain_loader(cfg)
    again.batch_sampler.load_state_dict({"seed": sampler.seed, "start_batch": 2})
    third = next(iter(again))
    assert torch.equal(third["images"], batches[2]["images"])
    assert torch.equal(third["target_images"], batches[2]["target_images"])
    assert third["img_paths"] == batches[2]["img_paths"]


# ------------------------------------------------------------------------------------------------ schedule
def test_published_schedule(datasets_root, tmp_path):
    trainer = _trainer(tmp_path, "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "2", "SOLVER.GAN.MAX_ITER", "7")
    model = trainer.model
    assert [(p.name, p.networks, p.every, p.start_iter) for p in model.phases()] == [
        ("gen", ("gen_st", "gen_ts"), 2, 0), ("sianet", ("sianet",), 1, 2), ("dis", ("dis_s", "dis_t"), 1, 0)]
    trainer.train()
    assert _iterations(trainer, "gen/loss_gan") == [0, 2, 4, 6]  # G every 2nd iteration
    assert _iterations(trainer, "gen/loss_cycle") == _iterations(trainer, "gen/loss_identity") == [0, 2, 4, 6]
    assert _iterations(trainer, "sianet/loss_sianet") == [2, 3, 4, 5, 6]  # from epoch 1
    assert _iterations(trainer, "gen/loss_contrastive") == [4, 6]  # G's contrastive term from epoch 2
    assert _iterations(trainer, "dis/loss_dis_s") == _iterations(trainer, "dis/loss_dis_t") == list(range(7))
    assert {int(i): w for w, i in trainer.storage.history("weight_contrastive").values()} == {
        0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0, 4: 2.0, 5: 2.0, 6: 2.0}
    assert len(model.pool_t) == len(model.pool_s) == 3  # full: 7 batches of 2 went through pools of 3
    rows = model.eval().visualize(trainer.last_batch)  # the image grid: source, G, F(G), target, F, G(F)
    assert list(rows) == ["source", "source_to_target", "source_cycle", "target", "target_to_source", "target_cycle"]
    assert all(r.shape == (2, 3, 128, 64) and 0 <= float(r.min()) and float(r.max()) <= 1 for r in rows.values())


def test_every_network_learns_and_the_losses_fall(datasets_root, tmp_path):
    fast = [item for net in NETS for item in (f"SOLVER.GAN.OPTIMIZERS.{net.upper()}.BASE_LR", "0.002")]
    trainer = _trainer(tmp_path, "SOLVER.GAN.MAX_ITER", "16", "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "2", *fast)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    for net in NETS:
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(net + ".")), net
    history = trainer.storage.history
    for key in ("gen/loss_cycle", "gen/loss_identity", "sianet/loss_sianet", "dis/loss_dis_t"):
        values = [v for v, _ in history(key).values()]
        assert sum(values[-2:]) < sum(values[:2]), (key, values)


def test_contrastive_loss_is_eq_6():
    e1 = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    e2 = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    d = (e1 - e2 + 1e-6).norm(dim=1)
    assert torch.allclose(contrastive_loss(e1, e2, True), (d ** 2).mean())
    assert torch.allclose(contrastive_loss(e1, e2, False, 2.0), ((2.0 - d).clamp(min=0) ** 2).mean())
    assert float(contrastive_loss(e1, e2, False, 0.0)) == 0.0  # m = 0: negatives are not backpropagated


# ------------------------------------------------------------------------------------------------ resume
def test_resume_is_exact_with_the_image_pools(datasets_root, tmp_path):
    straight = _trainer(tmp_path / "straight")
    straight.train()
    expected = straight.model.state_dict()

    half = _trainer(tmp_path / "resumed", "SOLVER.GAN.MAX_ITER", "2")
    half.train()
    saved = _weights(tmp_path / "resumed" / "model_final.pth")
    pools = saved["method_state"][0]
    assert pools["pool_t"]["images"].shape == (3, 3, 128, 64) and pools["pool_s"]["size"] == 3
    assert not any(k.startswith("pool") for k in saved["model"])  # weights stay weights
    torch.manual_seed(999)  # whatever the RNGs hold before resuming must not matter
    resumed = _trainer(tmp_path / "resumed", resume=True)
    assert resumed.start_iter == 2 and len(resumed.model.pool_t) == 3
    resumed.train()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    # fastreid's own Checkpointer (DefaultPredictor's loader) reads the file: the pools are beside the weights
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    plain = build_model(_cfg(tmp_path))
    Checkpointer(plain).load(str(tmp_path / "resumed" / "model_final.pth"))
    assert all(torch.equal(v, expected[k]) for k, v in plain.state_dict().items())

    # the pools matter: the same resume with them emptied trains other discriminators
    emptied = tmp_path / "emptied"
    emptied.mkdir()
    for pool in pools.values():
        pool["images"] = torch.empty(0)
    torch.save(saved, emptied / "model_final.pth")
    (emptied / "last_checkpoint").write_text("model_final.pth")
    other = _trainer(emptied, resume=True)
    other.train()
    assert any(not torch.equal(v, expected[k]) for k, v in other.model.state_dict().items() if k.startswith("dis_"))


def test_a_pool_of_another_size_is_refused_on_resume(datasets_root, tmp_path):
    _trainer(tmp_path, "SOLVER.GAN.MAX_ITER", "1").train()
    with pytest.raises(ValueError, match="saved pool has size 3, this one 5.*POOL_SIZE"):
        _trainer(tmp_path, "MODEL.SPGAN.POOL_SIZE", "5", resume=True)


# ------------------------------------------------------------------------------------------------ bad input
@DATASET_REGISTRY.register()
class SPGANTestEmptyTarget(ImageDataset):
    """A registered dataset without training images."""

    def __init__(self, root="", **kwargs):
        super().__init__([], [], [], **kwargs)


@DATASET_REGISTRY.register()
class SPGANTestSameImagesAsDuke(SyntheticDukeTiny):
    """The source's images under another name."""


@pytest.mark.parametrize("target, error, message", [
    ("", ValueError, "MODEL.SPGAN.TARGET_DATASET is empty: SPGAN trains on a labelled source"),
    ("SyntheticDukeTiny", ValueError, "'SyntheticDukeTiny' is also a source dataset"),
    ("SyntheticMarketTny", KeyError, "'SyntheticMarketTny' is not a registered dataset"),
    ("SPGANTestEmptyTarget", ValueError, "'SPGANTestEmptyTarget' has no training images"),
    ("SPGANTestSameImagesAsDuke", ValueError, "reads .* of the source's images"),
    ("DukeMTMC", FileNotFoundError, "MODEL.SPGAN.TARGET_DATASET 'DukeMTMC'"),
])
def test_bad_target_datasets_are_named(datasets_root, tmp_path, target, error, message):
    with pytest.raises(error, match=message):
        GANTrainer(_cfg(tmp_path, "MODEL.SPGAN.TARGET_DATASET", target))


# ------------------------------------------------------------------------------------------------ distributed
def _distributed_worker(out_dir: str, data_root: str) -> None:
    from fastreid.utils import comm

    os.environ["FASTREID_DATASETS"] = data_root
    rank = comm.get_rank()
    torch.manual_seed(100 + rank)  # different initial weights per rank: the engine broadcasts rank 0's
    trainer = _trainer(Path(out_dir), "SOLVER.IMS_PER_BATCH", "4", "SOLVER.GAN.MAX_ITER", "3")
    trainer.train()
    torch.save(trainer.model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_gloo_processes_keep_replicas_identical(datasets_root, tmp_path, monkeypatch):
    from fastreid_gan.engine import launch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    build_two_domain_loader(_cfg(tmp_path))  # generates both datasets before the workers start
    out = tmp_path / "dist"
    out.mkdir()
    launch(_distributed_worker, 2, dist_url="auto", args=(str(out), str(datasets_root)))
    rank0, rank1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
    saved = _weights(out / "model_final.pth")
    assert len(saved["method_state"]) == 2  # each rank's own pools (each rank sees its own data)
    assert not torch.equal(saved["method_state"][0]["pool_t"]["images"], saved["method_state"][1]["pool_t"]["images"])


# ------------------------------------------------------------------------------------------------ full size
@pytest.mark.timeout(300)
def test_one_full_size_iteration(datasets_root, tmp_path, cpu_share):
    """market2duke.yml as published (9-block generators, 64-wide PatchGANs, SiaNet, 256x128), random init,
    batch 1, one iteration with every phase (the start epochs set to 0), through tools/train_net.py's code."""
    out = tmp_path / "full"
    opts = ["MODEL.DEVICE", "cpu", "DATASETS.NAMES", "('SyntheticDukeTiny',)", "MODEL.SPGAN.TARGET_DATASET",
            "SyntheticMarketTiny", "DATASETS.TESTS", "()", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.GAN.MAX_ITER", "1",
            "SOLVER.GAN.CHECKPOINT_PERIOD", "0", "SOLVER.GAN.VIS_PERIOD", "0", "SOLVER.GAN.LOG_PERIOD", "1",
            "MODEL.SPGAN.SCHEDULE.METRIC_START_EPOCH", "0", "MODEL.SPGAN.SCHEDULE.CONTRASTIVE_START_EPOCH", "0",
            "DATALOADER.NUM_WORKERS", "0", "SEED", "0", "OUTPUT_DIR", str(out)]
    torch.set_num_threads(cpu_share)  # conftest.py: 2 cores, or this xdist worker's share
    try:
        main(argparse.Namespace(config_file=str(CONFIGS / "market2duke.yml"), opts=opts, eval_only=False,
                                resume=False, num_gpus=1))
    finally:
        torch.set_num_threads(1)
    events = [json.loads(line) for line in (out / "events.json").read_text().splitlines() if line.strip()]
    logged = {k for e in events for k in e}
    for key in ("gen/loss_gan", "gen/loss_cycle", "gen/loss_identity", "gen/loss_contrastive",
                "sianet/loss_sianet", "dis/loss_dis_s", "dis/loss_dis_t"):
        assert key in logged, key
    saved = _weights(out / "model_final.pth")
    assert saved["method_state"][0]["pool_t"]["images"].shape == (1, 3, 256, 128)
    # the published generator: 7.8M parameters (9 residual blocks of 256 maps)
    assert sum(p.numel() for k, p in saved["model"].items() if k.startswith("gen_st.")) > 7_000_000
