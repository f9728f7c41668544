"""TEST.SEARCH: the faiss top-k search and its truncated metrics against the exact path, recall@k, the chunked exact
path against the unchunked one, the evaluator's faiss mode, the errors, and benchmarks/search_scale.py at toy size."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import fastreid_gan  # noqa: F401  (fastreid compat first)

warnings.filterwarnings("ignore", message="Cython .* evaluation")
from fastreid_gan.config import get_cfg, merge_config  # noqa: E402
from fastreid_gan.evaluation import (  # noqa: E402
    FaissReidEvaluator,
    FeatureDistance,
    MatrixDistance,
    SearchSettings,
    build_search_index,
    exact_topk,
    rank_chunked,
    recall_at_k,
    search_rank,
    search_settings,
    truncated_metrics,
)
from fastreid_gan.evaluation.ranking import EvaluationDataError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:Cython .* evaluation")


def split(seed=0, nq=60, ng=400, dim=16, nid=30):
    """Small Market-like split: pid-0 distractors and pid -1 images in the gallery, 4 cameras (so same-camera
    images of a query's id exist: the protocol removes them), two query ids absent from the gallery."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, nid + 3, nq)
    g_pids = rng.integers(-1, nid + 1, ng)
    q_cams, g_cams = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    cent = rng.standard_normal((nid + 3, dim)) * 1.5
    qf = cent[q_pids] + rng.standard_normal((nq, dim))
    gf = cent[np.maximum(g_pids, 0)] * (g_pids[:, None] > 0) + rng.standard_normal((ng, dim))
    return qf.astype(np.float32), gf.astype(np.float32), q_pids, g_pids, q_cams, g_cams


def brute_force(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Independent reference: a full stable argsort per row, Market protocol, CMC and AP from their definitions."""
    cmc, aps = np.zeros(max_rank), []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hits = g_pids[order][keep] == q_pids[i]
        if not hits.any():
            continue
        first = int(np.argmax(hits))
        cmc[first:] += first < max_rank
        ranks = np.flatnonzero(hits)
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / (ranks + 1.0)))
    return cmc / len(aps), np.array(aps)


def cosine(qf, gf):
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    return 1.0 - qn.astype(np.float64) @ gn.T.astype(np.float64)


# ------------------------------------------------------------------------------------------------ flat index = exact
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_flat_index_top_k_equals_exact_top_k(metric):
    qf, gf, *_ = split(1)
    index = build_search_index(gf, metric, "Flat", use_gpu=False)
    dist, idx = index.search(qf, 25)
    exact = exact_topk(FeatureDistance(qf, gf, metric), 25)
    np.testing.assert_array_equal(idx, exact)
    ref = FeatureDistance(qf, gf, metric).chunk(0, len(qf))  # fastreid's distances (cosine / squared euclidean)
    np.testing.assert_allclose(dist, np.take_along_axis(ref, idx, 1), rtol=1e-4, atol=1e-4)


def test_nprobe_and_refine_reach_the_index():
    qf, gf, *_ = split(10, ng=1200)
    exact = exact_topk(FeatureDistance(qf, gf, "cosine"), 10)
    spec = "IVF8,PQ4x4fs,RFlat"  # 4-bit PQ codes: their own order differs from the exact one
    coarse = build_search_index(gf, "cosine", spec, nprobe=1, refine=1, use_gpu=False).search(qf, 10)[1]
    full = build_search_index(gf, "cosine", spec, nprobe=8, refine=200, use_gpu=False).search(qf, 10)[1]
    assert recall_at_k(coarse, exact) < 0.9
    np.testing.assert_array_equal(full, exact)  # every list scanned, 2,000 candidates re-scored exactly


def test_exact_topk_chunked_equals_unchunked_and_argsort():
    qf, gf, *_ = split(2, ng=700)
    provider = FeatureDistance(qf, gf, "cosine")
    full = exact_topk(provider, 40, memory_budget_mb=1e3)
    tiny = exact_topk(provider, 40, memory_budget_mb=1e-3, num_threads=2)  # one row a chunk
    np.testing.assert_array_equal(full, tiny)
    np.testing.assert_array_equal(full, np.argsort(provider.chunk(0, len(qf)), axis=1, kind="stable")[:, :40])
    np.testing.assert_array_equal(exact_topk(provider, 700), np.argsort(provider.chunk(0, len(qf)), 1,
                                                                        kind="stable"))


def test_exact_topk_of_long_rows_with_ties_and_an_unlucky_sample():
    from fastreid_gan.evaluation.search import _row_topk

    rng = np.random.default_rng(3)
    dist = np.round(rng.random((12, 50_000)), 3).astype(np.float32)  # long rows (sampled threshold), many ties
    np.testing.assert_array_equal(exact_topk(MatrixDistance(dist), 30, memory_budget_mb=0.5),
                                  np.argsort(dist, axis=1, kind="stable")[:, :30])
    row = (1 + rng.random(200_000)).astype(np.float32)
    row[0:5 * 200:200] = 0.0  # the first sampled values are the row's only small ones: too few candidates
    np.testing.assert_array_equal(_row_topk(row, 10), np.argsort(row, kind="stable")[:10])


# ------------------------------------------------------------------------------------------------ truncated metrics
def test_truncated_metrics_equal_exact_ones_when_k_is_the_gallery_size():
    qf, gf, q_pids, g_pids, q_cams, g_cams = split(3)
    exact = rank_chunked(FeatureDistance(qf, gf, "cosine"), q_pids, g_pids, q_cams, g_cams)
    res = search_rank(qf, gf, q_pids, g_pids, q_cams, g_cams, "cosine",
                      SearchSettings(mode="faiss", topk=len(gf), index="Flat"), use_gpu=False)
    assert res.num_unmatched == exact.num_unmatched > 0  # the absent query ids are left out by both
    np.testing.assert_allclose(res.cmc, exact.cmc, atol=1e-12)
    np.testing.assert_allclose(res.all_AP, exact.all_AP, atol=1e-9)
    cmc_ref, ap_ref = brute_force(cosine(qf, gf), q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(res.cmc, cmc_ref, atol=1e-12)
    np.testing.assert_allclose(res.all_AP, ap_ref, atol=1e-9)


def test_truncated_metrics_at_small_k_are_the_exact_sums_cut_at_k():
    qf, gf, q_pids, g_pids, q_cams, g_cams = split(4)
    k = 5
    exact = rank_chunked(FeatureDistance(qf, gf, "cosine"), q_pids, g_pids, q_cams, g_cams)
    res = search_rank(qf, gf, q_pids, g_pids, q_cams, g_cams, "cosine",
                      SearchSettings(mode="faiss", topk=k, index="Flat"), use_gpu=False)
    assert res.extra["searched_k"] > k  # k + the most same-camera items of any query: exact removal
    np.testing.assert_allclose(res.cmc, exact.cmc[:k], atol=1e-12)  # CMC up to k is exact
    # AP@k: the exact AP's terms for ranks < k over all of the query's matches
    dist = cosine(qf, gf)
    expected = []
    for i in np.flatnonzero(res.valid):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hits = g_pids[order][keep] == q_pids[i]
        ranks = np.flatnonzero(hits)
        terms = np.arange(1, len(ranks) + 1) / (ranks + 1.0)
        expected.append(terms[ranks < k].sum() / len(ranks))
    np.testing.assert_allclose(res.all_AP, expected, atol=1e-9)
    assert res.mAP < exact.mAP


def test_truncated_metrics_on_a_hand_built_list():
    # gallery: 0 match(cam 1), 1 same pid + same camera (removed), 2 distractor, 3 match(cam 2), 4 other id, 5 match
    g_pids = np.array([7, 7, 0, 7, 3, 7])
    g_cams = np.array([1, 0, 1, 2, 1, 1])
    q_pids, q_cams = np.array([7, 3]), np.array([0, 0])
    ranked = np.array([[2, 1, 0, 4, 3, -1],     # kept: 2 (miss), 0 (hit, rank 2), 4 (miss), 3 (hit, rank 4)
                       [4, 0, 1, 2, 3, 5]])     # query 2: its only match (4) first
    res = truncated_metrics(ranked, 4, q_pids, g_pids, q_cams, g_cams)
    # query 1 has 3 matches (0, 3, 5; 1 is removed): AP@4 = (1/2 + 2/4) / 3
    np.testing.assert_allclose(res.all_AP, [(1 / 2 + 2 / 4) / 3, 1.0])
    np.testing.assert_allclose(res.cmc, [0.5, 1.0, 1.0, 1.0])
    res2 = truncated_metrics(ranked, 1, q_pids, g_pids, q_cams, g_cams)  # top 1: query 1 misses
    np.testing.assert_allclose(res2.all_AP, [0.0, 1.0])
    np.testing.assert_allclose(res2.cmc, [0.5])
    with pytest.raises(EvaluationDataError, match="none of the 1 queries has a match"):
        truncated_metrics(ranked[:1], 4, np.array([9]), g_pids, q_cams[:1], g_cams)


def test_recall_at_k_on_a_hand_built_case():
    approx = np.array([[0, 1, 2], [5, -1, 7], [3, 4, 8]])
    exact = np.array([[2, 1, 9], [7, 5, 6], [3, 8, 4]])
    assert recall_at_k(approx, exact) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert recall_at_k(exact, exact) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        recall_at_k(approx[:, :2], exact)


def test_approximate_index_recall_and_metrics():
    qf, gf, q_pids, g_pids, q_cams, g_cams = split(5, ng=2000, dim=8)
    exact = rank_chunked(FeatureDistance(qf, gf, "cosine"), q_pids, g_pids, q_cams, g_cams)
    res = search_rank(qf, gf, q_pids, g_pids, q_cams, g_cams, "cosine",
                      SearchSettings(mode="faiss", topk=20, index="HNSW16", ef_search=64, recall=True),
                      use_gpu=False)
    assert 0.9 <= res.recall <= 1.0 and res.extra["recall_s"] >= 0
    assert res.mAP <= exact.mAP + 1e-9 and res.cmc[0] == pytest.approx(exact.cmc[0], abs=0.05)


# ------------------------------------------------------------------------------------------------ exact path, chunked
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_chunked_exact_path_equals_unchunked_with_junk_and_distractors(metric):
    qf, gf, q_pids, g_pids, q_cams, g_cams = split(6, ng=900)
    # many images of one query id, most from the query's own camera: wide same-pid padding and many removed items
    g_pids[:200], g_cams[:150] = q_pids[0], q_cams[0]
    provider = FeatureDistance(qf, gf, metric)
    whole = rank_chunked(provider, q_pids, g_pids, q_cams, g_cams, memory_budget_mb=1e3, num_threads=1)
    chunked = rank_chunked(provider, q_pids, g_pids, q_cams, g_cams, memory_budget_mb=1e-3, num_threads=2)
    matrix = rank_chunked(MatrixDistance(provider.chunk(0, len(qf))), q_pids, g_pids, q_cams, g_cams,
                          memory_budget_mb=0.01)
    for res in (chunked, matrix):
        np.testing.assert_array_equal(res.valid, whole.valid)
        np.testing.assert_allclose(res.cmc, whole.cmc, atol=1e-12)
        np.testing.assert_allclose(res.all_AP, whole.all_AP, atol=1e-12)
        np.testing.assert_allclose(res.all_INP, whole.all_INP, atol=1e-12)
    cmc_ref, ap_ref = brute_force(provider.chunk(0, len(qf)), q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(whole.cmc, cmc_ref, atol=1e-12)
    np.testing.assert_allclose(whole.all_AP, ap_ref, atol=1e-9)


def test_pair_rerank_ranked_chunk_by_chunk_equals_the_dense_matrix():
    from fastreid_gan.evaluation.pair_rerank import PairRerankDistance, pair_rerank_distance

    qf, gf, q_pids, g_pids, q_cams, g_cams = split(9, ng=300)
    w = torch.from_numpy(np.random.default_rng(0).standard_normal(qf.shape[1]).astype(np.float32))

    def scorer(a, b):  # a deterministic pair distance unlike the feature distance
        return ((a - b).abs() * w.abs()).sum(1)

    provider = FeatureDistance(qf, gf, "euclidean")
    dense = pair_rerank_distance(provider, qf, gf, scorer, 10)
    lazy = PairRerankDistance(provider, qf, gf, scorer, 10, memory_budget_mb=1e-3)  # one row per scorer call
    np.testing.assert_allclose(lazy.chunk(0, len(qf)), dense, rtol=1e-6, atol=1e-5)
    ref = rank_chunked(MatrixDistance(dense), q_pids, g_pids, q_cams, g_cams)
    res = rank_chunked(lazy, q_pids, g_pids, q_cams, g_cams, memory_budget_mb=1e-3)  # one query row a chunk
    np.testing.assert_allclose(res.all_AP, ref.all_AP, atol=1e-12)
    np.testing.assert_allclose(res.cmc, ref.cmc, atol=1e-12)


# ------------------------------------------------------------------------------------------------ config and evaluator
def faiss_cfg(**search):
    cfg = get_cfg()
    cfg.TEST.SEARCH.MODE = "faiss"
    for key, value in search.items():
        cfg.TEST.SEARCH[key] = value
    return cfg


def run_evaluator(cfg, data, device="cpu"):
    qf, gf, q_pids, g_pids, q_cams, g_cams = data
    ev = FaissReidEvaluator(cfg, len(qf), device=device, dataset_name="Toy")
    feats = np.concatenate([qf, gf])
    pids, cams = np.concatenate([q_pids, g_pids]), np.concatenate([q_cams, g_cams])
    for s in range(0, len(feats), 64):
        ev.process({"targets": torch.from_numpy(pids[s:s + 64]), "camids": torch.from_numpy(cams[s:s + 64])},
                   torch.from_numpy(feats[s:s + 64]))
    return ev.evaluate()


def test_config_keys_and_overrides():
    cfg = get_cfg()
    assert search_settings(cfg) == SearchSettings()  # defaults: exact mode, top 100
    merge_config(cfg, opts=["TEST.SEARCH.MODE", "faiss", "TEST.SEARCH.INDEX", "IVF64,Flat", "TEST.SEARCH.TOPK", "50"])
    assert search_settings(cfg) == SearchSettings(mode="faiss", topk=50, index="IVF64,Flat")


def test_evaluator_faiss_mode_equals_exact_mode_at_gallery_size():
    data = split(7)
    ng = len(data[1])
    exact = run_evaluator(get_cfg(), data)
    res = run_evaluator(faiss_cfg(TOPK=ng, INDEX="Flat", RECALL=True), data)
    assert list(res) == ["Rank-1", "Rank-5", "Rank-10", f"mAP@{ng}", "metric", f"recall@{ng}"]
    for key in ("Rank-1", "Rank-5", "Rank-10", "metric"):
        assert res[key] == pytest.approx(exact[key], abs=1e-6)
    assert res[f"mAP@{ng}"] == pytest.approx(exact["mAP"], abs=1e-6)
    assert res[f"recall@{ng}"] == pytest.approx(100.0)
    small = run_evaluator(faiss_cfg(TOPK=3, INDEX="Flat"), data)
    assert list(small) == ["Rank-1", "mAP@3", "metric"] and small["Rank-1"] == pytest.approx(exact["Rank-1"])


def test_errors_name_the_key_and_the_fix():
    data = split(8, ng=200)
    with pytest.raises(ValueError, match="TEST.SEARCH.INDEX 'NoSuchIndex12' is not an index type the installed "
                                         "faiss .* set a faiss index_factory string it supports"):
        run_evaluator(faiss_cfg(INDEX="NoSuchIndex12"), data)
    with pytest.raises(ValueError, match=r"Toy: TEST.SEARCH.TOPK=201 exceeds the gallery size \(200 images\): set "
                                         r"TEST.SEARCH.TOPK 200 or less"):
        run_evaluator(faiss_cfg(TOPK=201), data)
    with pytest.raises(ValueError, match="TEST.SEARCH.TOPK must be >= 1"):
        FaissReidEvaluator(faiss_cfg(TOPK=0), 10)
    with pytest.raises(ValueError, match="TEST.SEARCH.MODE must be one of exact, faiss, got 'annoy'"):
        FaissReidEvaluator(faiss_cfg(MODE="annoy"), 10)
    with pytest.raises(ValueError, match="cannot be trained on this 200-image gallery .* use fewer IVF lists"):
        run_evaluator(faiss_cfg(INDEX="IVF1024,Flat"), data)
    cfg = faiss_cfg()
    cfg.TEST.ROC.ENABLED = True
    with pytest.raises(ValueError, match="TEST.ROC.ENABLED needs every query x gallery distance.* set "
                                         "TEST.ROC.ENABLED False or TEST.SEARCH.MODE exact"):
        FaissReidEvaluator(cfg, 10)


# ------------------------------------------------------------------------------------------------ the benchmark
def test_search_scale_benchmark_runs_at_toy_size(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "search_scale.py"), "--sizes", "3000:32",
                           "--queries", "60", "--topk", "10", "--index", "HNSW16", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| 3,000 | 32 |" in proc.stdout, proc.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert 0.5 < row["faiss"]["recall"] <= 1.0 and 0 < row["exact"]["mAP"] <= 100, row
    assert row["faiss"]["mAP_at_k"] <= row["exact"]["mAP"] + 1e-6 and row["search_speedup"] > 0, row
