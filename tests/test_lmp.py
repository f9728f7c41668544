"""Local max pooling (TEST.LMP, SPGAN/eSPGAN TPAMI Sec. 3.4): the pooling against hand-computed values, flip-sum
and normalisation, the config keys and their errors, the Baseline's eval forward, checkpoints, DefaultPredictor,
the evaluator (also with 16,384-d features)."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastreid_gan  # noqa: F401  (compat fixes and the Baseline registration first)
from fastreid.modeling import build_model
from fastreid.modeling.meta_arch.baseline import Baseline as FastreidBaseline

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.layers import LocalPooling, local_pool, set_local_pooling

pytestmark = pytest.mark.filterwarnings("ignore:Cython .* evaluation")  # fastreid's import-time notice
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "Synthetic" / "baseline_market.yml"
# ResNet-18, layer4 stride 1: a 64x32 image gives a (512, 4, 2) map
TINY = ["MODEL.DEVICE", "cpu", "MODEL.HEADS.NUM_CLASSES", "5", "DATALOADER.NUM_WORKERS", "0",
        "DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
        "TEST.IMS_PER_BATCH", "32"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _cfg(*opts):
    return merge_config(get_cfg(), str(CONFIG), TINY + list(opts))


# --------------------------------------------------------------------------------------------- the pure function
def _map():
    """(1, 2, 5, 2): channel 0 rows [1 2] [3 0] [5 4] [0 7] [2 2]; channel 1 rows [0 -1] [-2 -3] [4 -5] [-6 -7] [8 -9]."""
    c0 = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0], [0.0, 7.0], [2.0, 2.0]])
    c1 = torch.tensor([[0.0, -1.0], [-2.0, -3.0], [4.0, -5.0], [-6.0, -7.0], [8.0, -9.0]])
    return torch.stack([c0, c1]).unsqueeze(0)


def test_max_and_avg_pooling_equal_hand_computed_values_with_an_uneven_split():
    # H = 5, P = 3, torch's adaptive boundaries: rows [0, 2), [1, 4), [3, 5) (stripes share rows 1 and 3)
    x = _map()
    # maxima: channel 0: 3, 7, 7; channel 1: 0, 4, 8; part-major: [p0c0, p0c1, p1c0, p1c1, p2c0, p2c1]
    assert local_pool(x, 3, "max").tolist() == [[3.0, 0.0, 7.0, 4.0, 7.0, 8.0]]
    # means: channel 0: 6/4, 19/6, 11/4; channel 1: -6/4, -19/6, -14/4
    avg = local_pool(x, 3, "avg")
    assert torch.allclose(avg, torch.tensor([[1.5, -1.5, 19 / 6, -19 / 6, 2.75, -3.5]]))
    # P = 1 with avg is the global average pool; P = H takes each row
    assert torch.allclose(local_pool(x, 1, "avg"), x.mean(dim=(2, 3)))
    assert local_pool(x, 5, "max")[0, 0::2].tolist() == [2.0, 3.0, 5.0, 7.0, 2.0]


def test_even_split_is_disjoint_stripes_and_part_major():
    x = torch.randn(3, 4, 8, 3)
    out = local_pool(x, 4, "max")
    assert out.shape == (3, 16)
    for p in range(4):
        assert torch.equal(out[:, p * 4:(p + 1) * 4], x[:, :, 2 * p:2 * p + 2].amax(dim=(2, 3)))


def test_flip_sum_and_normalisation():
    torch.manual_seed(1)
    images = torch.randn(2, 3, 6, 4)
    calls = []

    def left_column(x):  # not mirror-invariant, so a missing flip changes the result
        calls.append(x.clone())
        return x[..., :1]

    feat = LocalPooling(3, "max")(left_column, images)
    expected = local_pool(images[..., :1], 3) + local_pool(images[..., -1:], 3)  # flip(x)[..., 0] = x[..., -1]
    assert torch.allclose(feat, F.normalize(expected, dim=1), atol=1e-6)
    assert torch.allclose(feat.norm(dim=1), torch.ones(2), atol=1e-6)
    assert len(calls) == 2 and torch.equal(calls[1], images.flip(3))  # two calls: no batch statistics shared


@pytest.mark.parametrize("parts,pool,match", [(0, "max", "TEST.LMP.PARTS must be an integer >= 1"),
                                              (-2, "avg", "TEST.LMP.PARTS must be an integer >= 1"),
                                              (4, "sum", "TEST.LMP.POOL must be one of max, avg")])
def test_bad_settings_are_named(parts, pool, match):
    with pytest.raises(ValueError, match=match):
        LocalPooling(parts, pool)
    with pytest.raises(ValueError, match=match):
        local_pool(torch.zeros(1, 1, 4, 1), parts, pool)


def test_more_parts_than_rows_is_named_at_the_forward():
    with pytest.raises(ValueError, match=r"TEST.LMP.PARTS = 8 .* only 4 rows .* at most 4"):
        local_pool(torch.zeros(1, 2, 4, 2), 8)


# ---------------------------------------------------------------------------------------------------- config keys
def test_config_keys_and_defaults():
    lmp = get_cfg().TEST.LMP
    assert (lmp.ENABLED, lmp.PARTS, lmp.POOL) == (False, 8, "max")
    assert LocalPooling.from_config(get_cfg()) is None
    on = LocalPooling.from_config(_cfg("TEST.LMP.ENABLED", "True", "TEST.LMP.POOL", "avg", "TEST.LMP.PARTS", "2"))
    assert (on.parts, on.pool) == (2, "avg")


@pytest.mark.parametrize("opts,match", [
    (["TEST.LMP.PARTS", "0"], "TEST.LMP.PARTS must be an integer >= 1"),
    (["TEST.LMP.POOL", "median"], "TEST.LMP.POOL must be one of max, avg"),
    (["TEST.LMP.ENABLED", "True", "TEST.LMP.POOL", "gem"], "TEST.LMP.POOL must be one of max, avg"),
])
def test_bad_config_is_an_error_at_merge_time(opts, match):
    with pytest.raises(ValueError, match=match):
        _cfg(*opts)


# ------------------------------------------------------------------------------------------------------- Baseline
def test_baseline_is_fastreids_with_the_same_weights_and_feature_when_off():
    model = build_model(_cfg()).eval()
    assert isinstance(model, FastreidBaseline) and type(model).__name__ == "Baseline"
    assert model.local_pooling is None
    plain = FastreidBaseline(_cfg())
    assert list(model.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(model.state_dict())
    images = torch.rand(3, 3, 64, 32) * 255
    with torch.no_grad():
        assert torch.equal(model(images), plain.eval()(images))  # the head's 512-d feature
        assert model(images).shape == (3, 512)


def test_baseline_eval_forward_with_lmp():
    model = build_model(_cfg("TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "4")).eval()
    images = torch.rand(3, 3, 64, 32) * 255
    copy = images.clone()
    with torch.no_grad():
        feat = model({"images": images})
        fmap = model.backbone(model.preprocess_image(images))
        fmap_flip = model.backbone(model.preprocess_image(images.flip(3)))
    assert torch.equal(images, copy)  # nothing normalised in place
    assert fmap.shape == (3, 512, 4, 2) and feat.shape == (3, 512 * 4)
    expected = F.normalize(local_pool(fmap, 4) + local_pool(fmap_flip, 4), dim=1)
    assert torch.allclose(feat, expected, atol=1e-6)
    from fastreid.utils.events import EventStorage

    model.train()  # training is untouched: the ID loss
    with EventStorage(0):
        losses = model({"images": images, "targets": torch.arange(3)})
    assert set(losses) == {"loss_cls"}


def test_baseline_more_parts_than_the_map_has_rows():
    model = build_model(_cfg("TEST.LMP.ENABLED", "True")).eval()  # PARTS 8, map of 4 rows at 64x32
    with pytest.raises(ValueError, match=r"TEST.LMP.PARTS = 8 .* only 4 rows"):
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 32) * 255)


def test_a_checkpoint_trained_without_lmp_loads_and_predicts_with_it(tmp_path):
    from fastreid.engine.defaults import DefaultPredictor

    from fastreid_gan.model_loading import load_model_for_inference

    trained = build_model(_cfg()).eval()
    with torch.no_grad():  # weights that differ from any fresh initialisation
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": trained.state_dict(), "iteration": 0}, str(weights))
    images = torch.rand(2, 3, 64, 32) * 255
    with torch.no_grad():
        head_feat = trained(images)
        lmp_feat = set_local_pooling(trained, LocalPooling(4))(images)
    assert lmp_feat.shape == (2, 2048)

    on = ["TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "4", "MODEL.WEIGHTS", str(weights)]
    loaded = load_model_for_inference(_cfg(*on), str(weights))
    predictor = DefaultPredictor(_cfg(*on))
    with torch.no_grad():
        assert torch.allclose(loaded(images), lmp_feat, atol=1e-6)
        assert torch.allclose(predictor(images), lmp_feat, atol=1e-6)
        set_local_pooling(loaded, None)
        assert torch.allclose(loaded(images), head_feat, atol=1e-6)  # switched off: the old feature


def test_set_local_pooling_refuses_a_model_without_a_feature_map():
    with pytest.raises(TypeError, match="does not support TEST.LMP"):
        set_local_pooling(torch.nn.Linear(2, 2), LocalPooling(2))


# ------------------------------------------------------------------------------------------------------ evaluator
def test_evaluator_gets_lmp_features_and_skips_the_redundant_flip(datasets_root):
    from fastreid_gan.evaluation import build_evaluator, evaluate_on_test_datasets

    dims, calls = [], []

    def builder(cfg, name):
        loader, evaluator = build_evaluator(cfg, name)
        process = evaluator.process
        evaluator.process = lambda inputs, outputs: (dims.append(outputs.shape[1]), process(inputs, outputs))
        return loader, evaluator

    results = {}
    for flip in ("False", "True"):
        cfg = _cfg("TEST.LMP.ENABLED", "True", "TEST.LMP.PARTS", "4", "TEST.FLIP.ENABLED", flip)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        forward = model.forward
        model.forward = lambda x: (calls.append(flip), forward(x))[1]
        results[flip] = evaluate_on_test_datasets(cfg, model, builder)["SyntheticMarketTiny"]
    assert set(dims) == {2048}
    assert calls.count("True") == calls.count("False")  # TEST.FLIP did not run the model twice per batch
    assert results["True"] == results["False"]
    assert 0.0 <= results["False"]["mAP"] <= 100.0


def test_evaluator_with_16384_d_features_equals_the_full_matrix_ranking():
    """LMP with P = 8 on a 2048-channel map: 16,384-d features.  The evaluator's per-chunk memory is the distance
    block (its budget) plus the chunk's query rows; the result equals fastreid's ranking of the full matrix."""
    from fastreid.evaluation import rank as fr_rank

    from fastreid_gan.evaluation import ReidEvaluator

    rng = np.random.default_rng(0)
    nq, ng, dim = 30, 120, 16384
    pids = np.concatenate([rng.integers(0, 10, nq), rng.integers(0, 10, ng)])
    cams = np.concatenate([np.zeros(nq, int), np.ones(ng, int)])
    feats = rng.standard_normal((10, dim)).astype(np.float32)[pids] + rng.standard_normal((nq + ng, dim),
                                                                                            dtype=np.float32) * 3
    cfg = get_cfg()
    evaluator = ReidEvaluator(cfg, nq, memory_budget_mb=0.005)  # a few query rows per chunk
    for s in range(0, nq + ng, 32):
        evaluator.process({"targets": torch.from_numpy(pids[s:s + 32]), "camids": torch.from_numpy(cams[s:s + 32])},
                          torch.from_numpy(feats[s:s + 32]))
    ours = evaluator.evaluate()
    q = F.normalize(torch.from_numpy(feats[:nq]), dim=1)
    g = F.normalize(torch.from_numpy(feats[nq:]), dim=1)
    cmc, aps, _ = fr_rank.evaluate_rank((1 - q @ g.T).numpy(), pids[:nq], pids[nq:], cams[:nq], cams[nq:],
                                        use_cython=False)
    assert ours["Rank-1"] == pytest.approx(cmc[0] * 100, abs=1e-4)
    assert ours["mAP"] == pytest.approx(np.mean(aps) * 100, abs=1e-4)


def test_feature_store_returns_the_freed_heap_once_per_full_slab(monkeypatch):
    """Without it glibc kept the freed per-batch outputs in the RSS: 2.8x the features' size (docs/lmp.md)."""
    from fastreid_gan.evaluation import reid_evaluator

    calls = []
    monkeypatch.setattr(reid_evaluator, "_MALLOC_TRIM", lambda pad: calls.append(pad))
    monkeypatch.setattr(reid_evaluator, "_SLAB_BYTES", 4 * 16384 * 10)  # 10 rows of 16,384-d per slab
    store = reid_evaluator._FeatureStore()
    for _ in range(7):  # 28 rows: 3 slabs
        store.add(np.ones((4, 16384), np.float32), np.zeros(4), np.zeros(4))
    assert len(store.slabs) == 3 and calls == [0, 0]
    assert sum(len(b) for b in store.blocks()) == 28
