"""fastreid_gan.evaluation: exactness against fastreid (Cython and Python rankers) and an independent brute force,
bounded-memory chunking, ROC, re-ranking, query expansion and the evaluator class end to end."""
import warnings

import numpy as np
import pytest
import torch

import fastreid_gan  # noqa: F401  (fastreid compat first)

warnings.filterwarnings("ignore", message="Cython .* evaluation")
from fastreid.evaluation import rank as fr_rank  # noqa: E402
from fastreid.utils.compute_dist import build_dist  # noqa: E402

from fastreid_gan.evaluation import (  # noqa: E402
    FaissReidEvaluator,
    FeatureDistance,
    MatrixDistance,
    ReidEvaluator,
    TorchFeatureDistance,
    aqe,
    compute_jaccard_distance,
    evaluate_rank,
    evaluate_rank_features,
    evaluate_roc_tpr,
    knn_search,
    rank_chunked,
    re_ranking,
)
from fastreid_gan.evaluation import reid_evaluator as reid_evaluator_mod  # noqa: E402
from fastreid_gan.evaluation.ranking import _ChunkRanker  # noqa: E402

ATOL = 1e-6
pytestmark = [
    pytest.mark.filterwarnings("ignore:Cython .* evaluation"),  # fastreid's import-time notice (rankers unused)
    pytest.mark.filterwarnings("ignore:This overload of addmm_ is deprecated"),  # fastreid's euclidean distance
]


# ------------------------------------------------------------------------------------------------ fixtures/helpers
@pytest.fixture(scope="session")
def cython_rank():
    """fastreid's Cython ranker compiled into the user cache (once), patched into fastreid; None if unavailable."""
    from fastreid_gan.compat import build_cython_ranker

    saved = (fr_rank.IS_CYTHON_AVAI, getattr(fr_rank, "evaluate_cy", None))
    module = build_cython_ranker()
    if module is None:  # no compiler / Cython: the pure-Python comparisons still run
        warnings.warn("could not compile fastreid's rank_cy")
        yield None
        return
    yield module
    fr_rank.IS_CYTHON_AVAI = saved[0]
    if saved[1] is not None:
        fr_rank.evaluate_cy = saved[1]


def market_like(seed, nq=80, ng=600, dim=24, nid=40, clustered=True):
    """Small Market-like split: distractors (pid 0) and junk (pid -1) in the gallery, 6 cameras (so same-camera
    matches exist), a few query ids absent from the gallery."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, nid + 3, nq)            # ids nid+1, nid+2 never appear in the gallery
    g_pids = rng.integers(-1, nid + 1, ng)            # includes 0 and -1
    q_cams, g_cams = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
    cent = rng.standard_normal((nid + 3, dim)) * (1.0 if clustered else 0.0)
    qf = cent[q_pids] + rng.standard_normal((nq, dim))
    gf = cent[np.maximum(g_pids, 0)] * (g_pids[:, None] > 0) + rng.standard_normal((ng, dim))
    return (qf.astype(np.float32), gf.astype(np.float32), q_pids, g_pids, q_cams, g_cams)


def brute_force(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Independent reference: full stable argsort, Market protocol, AP/INP/CMC from their definitions."""
    cmc_sum = np.zeros(max_rank)
    aps, inps = [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hits = (g_pids[order][keep] == q_pids[i])
        if not hits.any():
            continue
        ranks = np.flatnonzero(hits) + 1                 # 1-based ranks of the matches
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / ranks[-1])
        cmc_sum[ranks[0] - 1:] += 1
    return cmc_sum / len(aps), np.array(aps), np.array(inps)


def assert_same(a, b, atol=ATOL):
    assert len(a[1]) == len(b[1]) and len(a[2]) == len(b[2])
    np.testing.assert_allclose(np.asarray(a[0], np.float64), np.asarray(b[0], np.float64), atol=atol, rtol=0)
    np.testing.assert_allclose(np.asarray(a[1], np.float64), np.asarray(b[1], np.float64), atol=atol, rtol=0)
    np.testing.assert_allclose(np.asarray(a[2], np.float64), np.asarray(b[2], np.float64), atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------------------- ranking
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed,clustered", [(4, False), (1, True)])
def test_rank_equals_fastreid_and_brute_force(metric, seed, clustered, cython_rank):
    qf, gf, qp, gp, qc, gc = market_like(seed, clustered=clustered)
    dist = build_dist(torch.from_numpy(qf), torch.from_numpy(gf), metric)
    # fastreid's argsort is unstable, so exact float32 ties would make its order arbitrary; these seeds have none
    # (tie handling is covered by test_ties_follow_stable_order).
    assert all(len(np.unique(row)) == len(row) for row in dist)
    ours = evaluate_rank(dist, qp, gp, qc, gc)
    assert len(ours[1]) < len(qp)                         # some queries have no valid match and are skipped
    assert_same(ours, fr_rank.evaluate_rank(dist, qp, gp, qc, gc, use_cython=False))
    if cython_rank is not None:
        assert_same(ours, fr_rank.evaluate_rank(dist, qp, gp, qc, gc, use_cython=True))
    assert_same(ours, brute_force(dist, qp, gp, qc, gc))
    # Straight from features (numpy BLAS, chunked, never the full matrix) gives the same numbers.
    feat = evaluate_rank_features(qf, gf, qp, gp, qc, gc, metric=metric, memory_budget_mb=0.05)
    assert_same(feat.as_fastreid(), ours)


def test_rank_excludes_same_camera_matches_exactly():
    # One query, gallery: same pid same camera (junk, closest), other pid, same pid other camera.
    dist = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    cmc, ap, inp = evaluate_rank(dist, np.array([1]), np.array([1, 2, 1, 1]), np.array([0]), np.array([0, 0, 1, 0]))
    # Kept order: pid2 (miss), pid1/cam1 (hit at rank 2); the cam-0 pid-1 items are removed.
    assert ap[0] == pytest.approx(0.5) and inp[0] == pytest.approx(0.5)
    assert cmc[0] == 0 and cmc[1] == 1


def test_ties_follow_stable_order():
    # Heavily tied integer distances: ranking must equal the stable-argsort brute force exactly.
    rng = np.random.default_rng(3)
    qp, gp = rng.integers(1, 6, 40), rng.integers(0, 6, 300)
    qc, gc = rng.integers(0, 3, 40), rng.integers(0, 3, 300)
    dist = rng.integers(0, 7, (40, 300)).astype(np.float32)
    assert_same(evaluate_rank(dist, qp, gp, qc, gc, memory_budget_mb=0.01), brute_force(dist, qp, gp, qc, gc),
                atol=1e-12)


def test_chunked_equals_unchunked_and_backends_agree():
    qf, gf, qp, gp, qc, gc = market_like(5, nq=120, ng=900)
    whole = evaluate_rank_features(qf, gf, qp, gp, qc, gc, "euclidean", memory_budget_mb=512, num_threads=1)
    prov = FeatureDistance(qf, gf, "euclidean")
    ranker = _ChunkRanker(prov, qp, gp, qc, gc, 0.02, None)
    chunks = list(ranker.chunks())
    assert len(chunks) > 10 and all((e - s) * 900 * 4 <= 0.02 * 2 ** 20 for s, e in chunks)
    chunked = rank_chunked(prov, qp, gp, qc, gc, memory_budget_mb=0.02, num_threads=2)
    torch_cpu = rank_chunked(TorchFeatureDistance(qf, gf, "euclidean", "cpu"), qp, gp, qc, gc,
                             memory_budget_mb=0.02)
    for other in (chunked, torch_cpu):
        assert_same(other.as_fastreid(), whole.as_fastreid(), atol=1e-12)


def test_padding_cap_for_huge_same_pid_groups():
    # A query of pid -1 against thousands of pid -1 gallery items: chunks shrink so rows x R stays bounded.
    rng = np.random.default_rng(7)
    qp = np.array([-1, 1, 2, -1]); qc = np.array([0, 1, 2, 3])
    gp = np.concatenate([-np.ones(3000, np.int64), rng.integers(1, 3, 200)]); gc = rng.integers(0, 6, 3200)
    dist = rng.random((4, 3200)).astype(np.float32)
    ranker = _ChunkRanker(MatrixDistance(dist), qp, gp, qc, gc, 0.05, None)
    assert max(e - s for s, e in ranker.chunks()) < 4
    assert_same(evaluate_rank(dist, qp, gp, qc, gc, memory_budget_mb=0.05), brute_force(dist, qp, gp, qc, gc))


# -------------------------------------------------------------------------------------------------------------- ROC
def _fastreid_tpr(dist, qp, gp, qc, gc):
    from fastreid.evaluation.roc import evaluate_roc
    from sklearn import metrics

    scores, labels = evaluate_roc(dist, qp, gp, qc, gc, use_cython=False)
    fprs, tprs, _ = metrics.roc_curve(labels, scores)
    return {f: float(tprs[np.argmin(np.abs(fprs - f))]) for f in (1e-4, 1e-3, 1e-2)}


@pytest.mark.parametrize("levels", [5, 300, None])
def test_roc_equals_fastreid_sklearn(levels):
    rng = np.random.default_rng(11)
    nq, ng = 200, 1500
    qp, gp = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
    qc, gc = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    dist = rng.random((nq, ng)) if levels is None else rng.integers(0, levels, (nq, ng)) / levels
    dist = (dist - 0.3 * (qp[:, None] == gp[None, :])).astype(np.float32)  # ties between pos/neg included
    ref = _fastreid_tpr(dist, qp, gp, qc, gc)
    for window in (1, 16):  # window=1 forces the widening path whenever sklearn dropped a counted point
        assert evaluate_roc_tpr(dist, qp, gp, qc, gc, window=window, memory_budget_mb=0.2) == ref


# ------------------------------------------------------------------------------------------------ rerank / AQE / knn
def test_re_ranking_equals_fastreid():
    from fastreid.evaluation.rerank import re_ranking as fr_re_ranking

    torch.manual_seed(0)
    qf, gf = torch.randn(40, 16), torch.randn(200, 16)
    d = lambda a, b: np.sqrt(np.maximum(build_dist(a, b, "euclidean"), 0))  # noqa: E731
    for k1, k2 in [(20, 6), (7, 1)]:
        ref = fr_re_ranking(d(qf, gf), d(qf, qf), d(gf, gf), k1, k2, 0.3)
        ours = re_ranking(d(qf, gf), d(qf, qf), d(gf, gf), k1, k2, 0.3)
        np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=0)


def test_jaccard_equals_fastreid_compute_dist_on_cpu():
    from fastreid.utils.compute_dist import compute_jaccard_distance as fr_jaccard

    torch.manual_seed(1)
    feats = torch.nn.functional.normalize(torch.randn(240, 32), dim=1)
    ref = fr_jaccard(feats, k1=20, k2=6, search_option=3)   # fastreid's CPU faiss path
    ours = compute_jaccard_distance(feats, 20, 6)
    np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=0)
    block = compute_jaccard_distance(feats, 20, 6, row_range=(0, 40), col_range=(40, 240))
    np.testing.assert_allclose(block, ref[:40, 40:], atol=2e-6, rtol=0)


def test_aqe_equals_fastreid():
    from fastreid.evaluation.query_expansion import aqe as fr_aqe

    torch.manual_seed(2)
    q, g = torch.randn(30, 24), torch.randn(200, 24)
    for times, k in [(1, 5), (2, 10)]:
        a, b = fr_aqe(q, g, times, k, 3.0), aqe(q, g, times, k, 3.0)
        torch.testing.assert_close(b[0], a[0], atol=2e-6, rtol=0)
        torch.testing.assert_close(b[1], a[1], atol=2e-6, rtol=0)


def test_knn_search_cpu_flat_index():
    rng = np.random.default_rng(4)
    xb, xq = rng.standard_normal((300, 16)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)
    d, i = knn_search(xq, xb, 5, "euclidean", use_gpu=False)
    full = ((xq[:, None] - xb[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(i, np.argsort(full, 1)[:, :5])
    np.testing.assert_allclose(d, np.sort(full, 1)[:, :5], rtol=1e-4)


# ------------------------------------------------------------------------------------------------------- evaluator
def _feed(evaluator, feats, pids, cams, batch=32):
    evaluator.reset()
    for s in range(0, len(feats), batch):
        evaluator.process({"targets": torch.from_numpy(pids[s:s + batch]),
                           "camids": torch.from_numpy(cams[s:s + batch])}, torch.from_numpy(feats[s:s + batch]))
    return evaluator.evaluate()


def _split(seed=0, **kw):
    qf, gf, qp, gp, qc, gc = market_like(seed, **kw)
    return np.concatenate([qf, gf]), np.concatenate([qp, gp]), np.concatenate([qc, gc]), len(qf)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evaluator_equals_fastreid_evaluator(metric, cython_rank, monkeypatch):
    from fastreid.config import get_cfg
    from fastreid.evaluation.reid_evaluation import ReidEvaluator as FastreidEvaluator

    # fastreid's constructor would run `make` in site-packages (and sys.exit on failure) without a built ranker.
    monkeypatch.setattr(FastreidEvaluator, "_compile_dependencies", lambda self: None)
    feats, pids, cams, nq = _split(1)
    cfg = get_cfg()
    cfg.TEST.METRIC = metric
    cfg.TEST.ROC.ENABLED = True
    ours = _feed(FaissReidEvaluator(cfg, nq, memory_budget_mb=0.05), feats, pids, cams)
    ref = _feed(FastreidEvaluator(cfg, nq), feats, pids, cams)
    assert list(ours) == list(ref) == ["Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric", "TPR@FPR=1e-04",
                                       "TPR@FPR=1e-03", "TPR@FPR=1e-02"]
    for k in ref:  # percentages: fastreid's float32 CMC/AP sums limit the agreement to ~1e-5 percent points
        assert ours[k] == pytest.approx(float(ref[k]), abs=1e-4), k
    assert ours["metric"] == pytest.approx((ours["mAP"] + ours["Rank-1"]) / 2)

    # AQE on: still equal to fastreid, and different from AQE off.
    cfg.TEST.AQE.ENABLED = True
    ours_aqe = _feed(FaissReidEvaluator(cfg, nq), feats, pids, cams)
    ref_aqe = _feed(FastreidEvaluator(cfg, nq), feats, pids, cams)
    for k in ref_aqe:
        assert ours_aqe[k] == pytest.approx(float(ref_aqe[k]), abs=1e-4), k
    assert ours_aqe["mAP"] != pytest.approx(ours["mAP"], abs=1e-3)


def test_evaluator_rerank_on_cpu_equals_fastreid_pipeline():
    """fastreid's ReidEvaluator needs CUDA for re-ranking; rebuild its pipeline from its CPU pieces."""
    from fastreid.config import get_cfg
    from fastreid.utils.compute_dist import compute_jaccard_distance as fr_jaccard

    feats, pids, cams, nq = _split(2, nq=40, ng=260, dim=16)
    cfg = get_cfg()
    cfg.TEST.RERANK.ENABLED = True
    ours = _feed(FaissReidEvaluator(cfg, nq), feats, pids, cams)
    q, g = torch.from_numpy(feats[:nq]), torch.from_numpy(feats[nq:])
    dist = build_dist(q, g, "cosine")
    allf = torch.nn.functional.normalize(torch.cat([q, g]), dim=1)
    jac = fr_jaccard(allf, k1=cfg.TEST.RERANK.K1, k2=cfg.TEST.RERANK.K2, search_option=3)[:nq, nq:]
    lam = cfg.TEST.RERANK.LAMBDA
    cmc, aps, _ = fr_rank.evaluate_rank(jac * (1 - lam) + dist * lam, pids[:nq], pids[nq:], cams[:nq], cams[nq:],
                                        use_cython=False)
    assert ours["mAP"] == pytest.approx(np.mean(aps) * 100, abs=1e-4)
    assert ours["Rank-1"] == pytest.approx(cmc[0] * 100, abs=1e-4)


def test_evaluator_slabs_alias_and_reset(monkeypatch):
    from fastreid.config import get_cfg

    assert ReidEvaluator is FaissReidEvaluator
    feats, pids, cams, nq = _split(3)
    cfg = get_cfg()
    one_slab = _feed(FaissReidEvaluator(cfg, nq), feats, pids, cams)
    # Tiny slabs: features spread over many blocks, query/gallery boundary inside a block.
    monkeypatch.setattr(reid_evaluator_mod, "_SLAB_BYTES", 24 * 4 * 37)
    ev = FaissReidEvaluator(cfg, nq, memory_budget_mb=0.03)
    many = _feed(ev, feats, pids, cams, batch=17)
    assert len(ev._store.slabs) > 10
    assert many == pytest.approx(one_slab, abs=1e-9)
    assert ev.evaluate() == pytest.approx(many, abs=1e-12)   # evaluate() can be called again
    assert _feed(ev, feats, pids, cams) == pytest.approx(one_slab, abs=1e-9)  # reset() clears the store


def _distributed_worker(out_path: str) -> None:
    import json

    from fastreid.config import get_cfg
    from fastreid.utils import comm

    feats, pids, cams, nq = _split(4)
    rank, world = comm.get_rank(), comm.get_world_size()
    # Contiguous shares in rank order, as fastreid's InferenceSampler hands them out.
    per = (len(feats) + world - 1) // world
    lo, hi = rank * per, min(len(feats), (rank + 1) * per)
    ev = FaissReidEvaluator(get_cfg(), nq)
    res = _feed(ev, feats[lo:hi], pids[lo:hi], cams[lo:hi])
    if comm.is_main_process():
        with open(out_path, "w") as f:
            json.dump(res, f)
    else:
        assert res == {}


def test_evaluator_gathers_across_gloo_processes(tmp_path, monkeypatch):
    import json

    from fastreid.config import get_cfg

    from fastreid_gan.engine import launch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = str(tmp_path / "res.json")
    launch(_distributed_worker, 2, dist_url="auto", args=(out,))
    feats, pids, cams, nq = _split(4)
    single = _feed(FaissReidEvaluator(get_cfg(), nq), feats, pids, cams)
    assert json.load(open(out)) == pytest.approx(dict(single), abs=1e-9)


# ------------------------------------------------------------------------------------------------------ edge cases
def _hand_split(q_pids, q_cams, g_pids, g_cams, seed=0):
    """Random features (queries first) for a hand-made split, with its labels and number of queries."""
    pids, cams = np.array(q_pids + g_pids), np.array(q_cams + g_cams)
    feats = np.random.default_rng(seed).standard_normal((len(pids), 8)).astype(np.float32)
    return feats, pids, cams, len(q_pids)


@pytest.mark.parametrize("ng,ranks", [(3, [1]), (7, [1, 5]), (10, [1, 5, 10])])
def test_evaluator_small_gallery_reports_cmc_up_to_its_size(ng, ranks, caplog):
    from fastreid.config import get_cfg

    # fastreid's evaluator reads cmc[4] and cmc[9] whatever the gallery size (IndexError below 10 images)
    feats, pids, cams, nq = _hand_split([1, 2], [0, 0], [1, 2] + [9] * (ng - 2), [1] * ng)
    with caplog.at_level("WARNING", logger="fastreid_gan.evaluation.reid_evaluator"):
        res = _feed(FaissReidEvaluator(get_cfg(), nq, dataset_name="Tiny"), feats, pids, cams)
    assert list(res) == [f"Rank-{r}" for r in ranks] + ["mAP", "mINP", "metric"]
    assert ("CMC reported up to" in caplog.text) == (ng < 10)
    dist = build_dist(torch.from_numpy(feats[:nq]), torch.from_numpy(feats[nq:]), "cosine")
    cmc, aps, _ = brute_force(dist, pids[:nq], pids[nq:], cams[:nq], cams[nq:], max_rank=ng)
    for r in ranks:
        assert res[f"Rank-{r}"] == pytest.approx(cmc[r - 1] * 100)
    assert res["mAP"] == pytest.approx(np.mean(aps) * 100)


def test_queries_without_match_are_counted_logged_and_left_out(caplog):
    from fastreid.config import get_cfg

    # query pid 1 has a gallery match on another camera; pid 2 only on its own camera (removed); pid 3 none
    feats, pids, cams, nq = _hand_split([1, 2, 3], [0, 0, 0], [1, 2, 5, 6, 7], [1, 0, 1, 1, 1])
    ev = FaissReidEvaluator(get_cfg(), nq, dataset_name="TinySet")
    with caplog.at_level("INFO", logger="fastreid_gan.evaluation.reid_evaluator"):
        res = _feed(ev, feats, pids, cams)
    assert ev.num_unmatched_queries == 2
    assert "Evaluated TinySet: 3 queries (2 without a match in the gallery, left out of CMC/mAP/mINP)" in caplog.text
    # mAP/CMC are those of the one matched query alone (Market-1501 protocol, as fastreid)
    dist = build_dist(torch.from_numpy(feats[:1]), torch.from_numpy(feats[nq:]), "cosine")
    cmc, aps, _ = brute_force(dist, pids[:1], pids[nq:], cams[:1], cams[nq:], max_rank=5)
    assert res["mAP"] == pytest.approx(aps[0] * 100) and res["Rank-1"] == pytest.approx(cmc[0] * 100)
    rank = rank_chunked(MatrixDistance(build_dist(torch.from_numpy(feats[:nq]), torch.from_numpy(feats[nq:]))),
                        pids[:nq], pids[nq:], cams[:nq], cams[nq:])
    assert rank.num_unmatched == 2 and list(rank.valid) == [True, False, False] and len(rank.all_AP) == 1


def test_unevaluable_splits_raise_errors_naming_the_dataset():
    from fastreid.config import get_cfg

    from fastreid_gan.evaluation import EvaluationDataError

    feats, pids, cams, _ = _hand_split([1, 2], [0, 0], [3, 4, 5], [1, 1, 1])
    with pytest.raises(EvaluationDataError, match=r"^TinySet: the query set is empty"):
        _feed(FaissReidEvaluator(get_cfg(), 0, dataset_name="TinySet"), feats, pids, cams)
    with pytest.raises(EvaluationDataError, match=r"^TinySet: the gallery is empty.*bounding_box_test"):
        _feed(FaissReidEvaluator(get_cfg(), len(feats), dataset_name="TinySet"), feats, pids, cams)
    # no query identity in the gallery: fastreid (and this code before) raised a bare AssertionError
    with pytest.raises(EvaluationDataError, match=r"^TinySet: none of the 2 queries has a match in the 3-image"):
        _feed(FaissReidEvaluator(get_cfg(), 2, dataset_name="TinySet"), feats, pids, cams)
    assert issubclass(EvaluationDataError, ValueError) and not issubclass(EvaluationDataError, AssertionError)
    with pytest.raises(EvaluationDataError, match="query set is empty"):
        evaluate_rank(np.zeros((0, 3), np.float32), np.zeros(0, int), pids[2:], np.zeros(0, int), cams[2:])


@pytest.mark.filterwarnings("ignore:The current data structure is deprecated")
def test_build_evaluator_on_a_tiny_market_folder_names_it(tmp_path, monkeypatch):
    from fastreid.config import get_cfg

    from fastreid_gan.evaluation import build_evaluator

    names = {"bounding_box_train": ["0001_c1s1_000001_00.jpg"],
             "query": ["0002_c1s1_000001_00.jpg", "0003_c1s1_000001_00.jpg"],
             "bounding_box_test": ["0002_c2s1_000001_00.jpg", "0003_c2s1_000001_00.jpg", "0000_c2s1_000001_00.jpg",
                                   "-1_c2s1_000001_00.jpg"]}  # junk (-1) is dropped: a 3-image gallery
    for folder, files in names.items():
        (tmp_path / "Market-1501-v15.09.15" / folder).mkdir(parents=True)
        for f in files:
            (tmp_path / "Market-1501-v15.09.15" / folder / f).touch()  # not read: features are fed directly
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path))
    cfg = get_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    loader, ev = build_evaluator(cfg, "Market1501")
    assert ev.dataset_name == "Market1501" and ev._num_query == 2
    items = loader.dataset.img_items
    pids = np.array([p for _, p, _ in items])
    cams = np.array([c for _, _, c in items])
    assert sorted(pids[2:]) == [0, 2, 3]
    feats = np.eye(8, dtype=np.float32)[pids]  # each query's gallery image (same pid) is its nearest neighbour
    res = _feed(ev, feats, pids, cams)
    assert list(res) == ["Rank-1", "mAP", "mINP", "metric"] and res["Rank-1"] == 100.0 and res["mAP"] == 100.0


# ----------------------------------------------------------------------------- pair re-ranking (TEST.PAIR_RERANK)
def test_pair_rerank_reorders_the_top_k_and_keeps_the_rest_behind():
    from fastreid_gan.evaluation.pair_rerank import pair_rerank_distance

    rng = np.random.default_rng(0)
    dist = rng.random((4, 9)).astype(np.float32)
    query = rng.standard_normal((4, 3)).astype(np.float32)
    gallery = rng.standard_normal((9, 3)).astype(np.float32)
    truth = rng.random((4, 9)).astype(np.float32)  # what the scorer says, looked up by the feature pair
    index = {tuple(g): j for j, g in enumerate(gallery)}
    qindex = {tuple(q): i for i, q in enumerate(query)}

    def scorer(qf, gf):
        return torch.tensor([truth[qindex[tuple(q.tolist())], index[tuple(g.tolist())]] for q, g in zip(qf, gf)])

    for topk, budget in ((3, 256.0), (3, 1e-6), (20, 256.0)):  # 1e-6 MB: one query per chunk
        out = pair_rerank_distance(MatrixDistance(dist), query, gallery, scorer, topk, budget)
        for i in range(4):
            nearest = np.argsort(dist[i])
            k = min(topk, 9)
            top = nearest[:k]
            expected = list(top[np.argsort(truth[i, top])]) + list(nearest[k:])
            assert list(np.argsort(out[i], kind="stable")) == expected


def test_pair_rerank_needs_a_pair_scorer():
    from fastreid_gan.config import get_cfg
    from fastreid_gan.evaluation.dataset_evaluation import _pair_scorer

    cfg = get_cfg()
    assert _pair_scorer(cfg, torch.nn.Linear(1, 1)) is None
    cfg.TEST.PAIR_RERANK.ENABLED = True
    with pytest.raises(ValueError, match="Linear has none: set TEST.PAIR_RERANK.ENABLED False"):
        _pair_scorer(cfg, torch.nn.Linear(1, 1))
