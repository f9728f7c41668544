"""Ranked-list pictures, CMC and ROC curves of query/gallery features (what ``tools/visualize_ranks.py`` draws).

The ranking is the evaluator's (``fastreid_gan.evaluation``): the same distances (``TEST.METRIC``, with
``TEST.AQE`` / ``TEST.RERANK`` applied as the evaluator applies them), the same Market-1501 protocol and the same
order among equal distances (gallery index), so the metrics printed with a picture are the evaluator's.

Each gallery image of a query's list is one of (``docs/retrieval.md`` has the legend):

* a true match (green): same identity, another camera;
* a false match (red): another identity;
* a distractor (orange): pid 0 (Market's background/distractor images) or -1 (Market's junk detections, which the
  project's dataset readers drop, so they appear only in features of other data); the evaluator ranks them as
  other identities, so they count as false matches;
* junk (grey, image faded): same identity and same camera; the protocol leaves them out of the ranking (they get
  no rank number and do not count towards the top k), the picture shows where they would be.

The picture is one PNG with a row per query (query first, then its top k): one file to open, and rows that are
easy to compare.  It is drawn with PIL, not matplotlib, so every cell sits at a known pixel box
(:class:`GridLayout`).  fastreid's ``Visualizer`` is not used: it argsorts the whole query x gallery distance
matrix, marks true matches red and false ones blue, drops junk silently and writes one figure per query through
pyplot's global state.
"""
from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fastreid_gan.evaluation import FPR_TARGETS, EvaluationDataError, aqe, rank_chunked, tpr_at_fpr_chunked
from fastreid_gan.evaluation.distance import DistanceProvider, FeatureDistance, MatrixDistance
from fastreid_gan.evaluation.reranking import rerank_distance
from fastreid_gan.evaluation.roc import roc_key

from .feature_extraction import ExtractedFeatures, RetrievalInputError, atomic_write

__all__ = [
    "MATCH", "FALSE", "DISTRACTOR", "JUNK", "KINDS", "COLORS", "QUERY_COLOR", "DISTRACTOR_PIDS", "SELECTIONS",
    "RankEntry", "QueryRow", "RankingEvaluation", "GridLayout", "VisualizationResult",
    "gallery_kinds", "evaluate_ranking", "select_queries", "ranked_rows", "roc_points",
    "draw_rank_grid", "plot_cmc", "plot_roc", "visualize_ranks",
]

logger = logging.getLogger(__name__)

MATCH, FALSE, DISTRACTOR, JUNK = "match", "false", "distractor", "junk"
KINDS = (MATCH, FALSE, DISTRACTOR, JUNK)
#: border colours (RGB) of the gallery cells, by kind, and of the query cell
COLORS: Dict[str, Tuple[int, int, int]] = {MATCH: (0, 170, 0), FALSE: (220, 0, 0), DISTRACTOR: (255, 140, 0),
                                           JUNK: (150, 150, 150)}
QUERY_COLOR = (40, 90, 230)
#: gallery pids drawn as distractors (Market-1501: 0 = background/distractors, -1 = junk detections)
DISTRACTOR_PIDS = (0, -1)
#: which queries ``--select`` picks: the query set's order, the lowest or highest AP first, a seeded sample
SELECTIONS = ("first", "worst", "best", "random")
LEGEND = OrderedDict([("query", "query"), (MATCH, "true match"), (FALSE, "false match"),
                      (DISTRACTOR, "distractor (pid 0 / -1)"), (JUNK, "junk: same id + camera, not ranked")])


@dataclass
class RankEntry:
    """One gallery image of a query's list."""

    gallery_index: int
    distance: float
    kind: str
    rank: Optional[int]  # 1-based rank under the protocol; None for junk (not ranked)


@dataclass
class QueryRow:
    """A query and the gallery images of its list, nearest first: ``topk`` ranked ones and the junk among them."""

    query_index: int
    ap: Optional[float]  # the query's average precision (0..1); None without a match in the gallery
    entries: List[RankEntry]


@dataclass
class RankingEvaluation:
    """The evaluator's numbers for query x gallery features, and the distances they came from."""

    metrics: "OrderedDict[str, float]"     # Rank-k, mAP, mINP, metric (%), TPR@FPR=... (fractions) with ROC
    cmc: np.ndarray                        # (min(50, gallery),) matching rate at each rank, 0..1
    ap: np.ndarray                         # (num_query,) AP per query, NaN without a match
    provider: DistanceProvider
    num_unmatched: int
    roc: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (fpr, tpr) of the curve, with TEST.ROC.ENABLED


@dataclass
class GridLayout:
    """Where the picture's cells are: ``cells[(row, col)]`` is the box ``(x0, y0, x1, y1)`` (x1, y1 exclusive)
    of a cell's coloured border; the image sits ``border`` pixels inside.  Column 0 is the query."""

    size: Tuple[int, int]
    border: int
    cells: Dict[Tuple[int, int], Tuple[int, int, int, int]] = field(default_factory=dict)
    kinds: Dict[Tuple[int, int], str] = field(default_factory=dict)


@dataclass
class VisualizationResult:
    files: Dict[str, Path]
    evaluation: RankingEvaluation
    rows: List[QueryRow]
    layout: GridLayout


# ---------------------------------------------------------------------------------------------------- ranking
def gallery_kinds(q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray) -> np.ndarray:
    """The kind (:data:`KINDS`) of every gallery image for one query, as an array of strings."""
    same_pid = g_pids == q_pid
    junk = same_pid & (g_camids == q_camid)
    kinds = np.full(len(g_pids), FALSE, dtype=object)
    kinds[np.isin(g_pids, DISTRACTOR_PIDS) & ~same_pid] = DISTRACTOR
    kinds[same_pid & ~junk] = MATCH
    kinds[junk] = JUNK
    return kinds


def _check_pair(query: ExtractedFeatures, gallery: ExtractedFeatures) -> None:
    for what, part in (("query", query), ("gallery", gallery)):
        if not part.labelled:
            raise RetrievalInputError(f"the {what} features have no pids/camids: extract them from a dataset "
                                      f"(tools/extract_features.py --dataset NAME --split {what} --output X.npz)")
        if len(part) == 0:
            raise RetrievalInputError(f"the {what} set is empty")
    if query.features.shape[1] != gallery.features.shape[1]:
        raise RetrievalInputError(f"query features are {query.features.shape[1]}-d but gallery features "
                                  f"{gallery.features.shape[1]}-d: extract both with the same model and TEST.LMP")


def evaluate_ranking(query: ExtractedFeatures, gallery: ExtractedFeatures, cfg: Any,
                     memory_budget_mb: float = 256.0, dataset: str = "") -> RankingEvaluation:
    """Rank ``query`` against ``gallery`` as the evaluator does with ``cfg.TEST`` (METRIC, AQE, RERANK, ROC).

    Raises:
        RetrievalInputError: features without labels, of different dimensions.
        EvaluationDataError: no query has a match in the gallery.
    """
    _check_pair(query, gallery)
    test = cfg.TEST
    qf, gf = query.features, gallery.features
    if test.AQE.ENABLED:
        qt, gt = aqe(qf, gf, test.AQE.QE_TIME, test.AQE.QE_K, test.AQE.ALPHA)
        qf, gf = qt.numpy(), gt.numpy()
    provider: DistanceProvider = FeatureDistance(qf, gf, test.METRIC)
    if test.RERANK.ENABLED:
        dist = rerank_distance(qf, gf, provider.chunk(0, provider.num_query), test.METRIC, test.RERANK.K1,
                               test.RERANK.K2, test.RERANK.LAMBDA)
        provider = MatrixDistance(dist)
    if test.PAIR_RERANK.ENABLED and not test.LMP.ENABLED:
        logger.warning("TEST.PAIR_RERANK: the lists and metrics are the plain ranking's (the verified/* ranking of "
                       "tools/train_net.py --eval-only is not drawn)")
    roc = bool(test.ROC.ENABLED)
    q_pids, g_pids, q_cams, g_cams = query.pids, gallery.pids, query.camids, gallery.camids
    res = rank_chunked(provider, q_pids, g_pids, q_cams, g_cams, 50, memory_budget_mb, collect_roc=roc,
                       dataset=dataset or None)
    metrics: "OrderedDict[str, float]" = OrderedDict()
    for r in (1, 5, 10):
        if r <= len(res.cmc):
            metrics[f"Rank-{r}"] = float(res.cmc[r - 1] * 100)
    metrics["mAP"] = res.mAP * 100
    metrics["mINP"] = res.mINP * 100
    metrics["metric"] = (res.mAP + float(res.cmc[0])) / 2 * 100
    ap = np.full(len(q_pids), np.nan)
    ap[res.valid] = res.all_AP
    curve = None
    if roc:
        tprs = tpr_at_fpr_chunked(provider, q_pids, g_pids, q_cams, g_cams, res.positive_dists,
                                  res.num_negative_pairs, FPR_TARGETS, memory_budget_mb=memory_budget_mb)
        for fpr in FPR_TARGETS:
            metrics[roc_key(fpr)] = tprs[fpr]
        curve = roc_points(provider, q_pids, g_pids, res.positive_dists, memory_budget_mb)
    return RankingEvaluation(metrics, res.cmc, ap, provider, res.num_unmatched, curve)


def select_queries(ap: np.ndarray, num: int, how: str = "first", seed: int = 0) -> List[int]:
    """Indices of the queries to draw: the first ``num``, the ``num`` with the lowest (``worst``) or highest
    (``best``) AP (queries without a match are left out of those two), or ``num`` at random (seeded)."""
    if how not in SELECTIONS:
        raise RetrievalInputError(f"--select {how!r}: use one of {', '.join(SELECTIONS)}")
    if num < 1:
        raise RetrievalInputError(f"--num-queries {num}: must be at least 1")
    total = len(ap)
    if how == "first":
        return list(range(min(num, total)))
    if how == "random":
        return sorted(int(i) for i in np.random.default_rng(seed).choice(total, min(num, total), replace=False))
    valid = np.flatnonzero(~np.isnan(ap))
    order = valid[np.argsort(ap[valid], kind="stable")]
    if how == "best":
        order = valid[np.argsort(-ap[valid], kind="stable")]
    return [int(i) for i in order[:num]]


def _row_distances(provider: DistanceProvider, index: int) -> np.ndarray:
    row = provider.chunk(index, index + 1)
    row = row.cpu().numpy() if hasattr(row, "cpu") else np.asarray(row)
    return np.array(row[0], np.float32)


def ranked_rows(provider: DistanceProvider, query_indices: Sequence[int], query: ExtractedFeatures,
                gallery: ExtractedFeatures, topk: int, ap: Optional[np.ndarray] = None) -> List[QueryRow]:
    """Each query's ``topk`` ranked gallery images (nearest first, ties by gallery index as the evaluator
    breaks them), with the junk images that lie among them."""
    if topk < 1:
        raise RetrievalInputError(f"--topk {topk}: must be at least 1")
    rows = []
    for q in query_indices:
        dist = _row_distances(provider, q)
        order = np.argsort(dist, kind="stable")
        kinds = gallery_kinds(int(query.pids[q]), int(query.camids[q]), gallery.pids[order], gallery.camids[order])
        ranked = np.cumsum(kinds != JUNK)
        stop = int(np.searchsorted(ranked, topk) + 1) if ranked[-1] >= topk else len(order)
        entries = [RankEntry(int(order[i]), float(dist[order[i]]), str(kinds[i]),
                             None if kinds[i] == JUNK else int(ranked[i])) for i in range(stop)]
        q_ap = None if ap is None or np.isnan(ap[q]) else float(ap[q])
        rows.append(QueryRow(int(q), q_ap, entries))
    return rows


def roc_points(provider: DistanceProvider, q_pids: np.ndarray, g_pids: np.ndarray, positive_dists: np.ndarray,
               memory_budget_mb: float = 256.0, max_points: int = 2000) -> Tuple[np.ndarray, np.ndarray]:
    """The ROC curve in fastreid's ``TEST.ROC`` convention (``docs/retrieval.md``): at each threshold t (the
    matches' distances), ``fpr`` = the fraction of matching pairs (same id, another camera) at distance >= t and
    ``tpr`` = the fraction of other-identity pairs at distance >= t.  Same-camera pairs of one id are left out.
    Counted in row chunks: the query x gallery matrix is never held."""
    pos = np.sort(np.asarray(positive_dists, np.float64))
    if len(pos) == 0:
        return np.empty(0), np.empty(0)
    thresholds = np.unique(pos)
    if len(thresholds) > max_points:
        thresholds = thresholds[np.linspace(0, len(thresholds) - 1, max_points).round().astype(np.int64)]
    neg_ge = np.zeros(len(thresholds), np.int64)
    num_neg = 0
    G = provider.num_gallery
    step = max(1, int(memory_budget_mb * 2 ** 20 // max(1, 12 * G)))
    for start in range(0, provider.num_query, step):
        stop = min(provider.num_query, start + step)
        block = provider.chunk(start, stop)
        block = block.cpu().numpy() if hasattr(block, "cpu") else np.asarray(block)
        negatives = block[g_pids[None, :] != q_pids[start:stop, None]].astype(np.float64)
        num_neg += negatives.size
        below = np.searchsorted(thresholds, negatives, side="right")  # thresholds <= each distance
        counts = np.bincount(below, minlength=len(thresholds) + 1)
        neg_ge += np.cumsum(counts[::-1])[::-1][1:]                      # distances >= thresholds[j]
    fpr = (len(pos) - np.searchsorted(pos, thresholds, side="left")) / len(pos)
    tpr = neg_ge / max(1, num_neg)
    return fpr, tpr


# ---------------------------------------------------------------------------------------------------- drawing
_PAD, _BORDER, _CAPTION, _GAP, _QUERY_GAP, _HEADER = 10, 4, 30, 6, 22, 44


def _font(size: int = 11) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font only
        return ImageFont.load_default()


def _thumbnail(path: str, size: Tuple[int, int], faded: bool = False) -> Image.Image:
    try:
        with Image.open(path) as im:
            img = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    except (OSError, ValueError) as exc:
        raise RetrievalInputError(f"cannot read {path} for the picture: {exc} (the features' paths must still "
                                  f"point at their images)") from None
    if faded:  # junk: grey and light, so it reads as "not ranked"
        img = Image.blend(img.convert("L").convert("RGB"), Image.new("RGB", img.size, (255, 255, 255)), 0.45)
    return img


def _captions(rows: Sequence[QueryRow], query: ExtractedFeatures, gallery: ExtractedFeatures):
    """``(row, col, [line, line])`` of every cell: the query's pid, camera and AP; a gallery image's rank (or
    "junk") and distance, then its pid and camera (or "distractor").  Cameras are 1-based, as in Market-style
    file names (the readers' camids are 0-based)."""
    for r, qrow in enumerate(rows):
        q = qrow.query_index
        ap = "no match in gallery" if qrow.ap is None else f"AP {qrow.ap * 100:.1f}%"
        yield r, 0, [f"query {int(query.pids[q])} c{int(query.camids[q]) + 1}", ap]
        for c, entry in enumerate(qrow.entries, start=1):
            g = entry.gallery_index
            rank = "junk" if entry.rank is None else f"#{entry.rank}"
            second = ("distractor" if entry.kind == DISTRACTOR
                      else f"{int(gallery.pids[g])} c{int(gallery.camids[g]) + 1}")
            yield r, c, [f"{rank}  {entry.distance:.3f}", second]


def draw_rank_grid(rows: Sequence[QueryRow], query: ExtractedFeatures, gallery: ExtractedFeatures, path: Path,
                   image_size: Tuple[int, int] = (128, 64), title: str = "") -> GridLayout:
    """Draw one PNG with a row per query (its cell bordered blue) and its list (bordered by kind, captioned
    with the rank and distance, and the pid and camera), under a legend; written atomically.  ``image_size``:
    (height, width) of each image in the picture."""
    h, w = int(image_size[0]), int(image_size[1])
    cell_w, cell_h = w + 2 * _BORDER, h + 2 * _BORDER
    row_h = cell_h + _CAPTION + _PAD
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend_w = sum(int(measure.textlength(text, font=font)) + 34 for text in LEGEND.values())
    title_w = int(measure.textlength(title, font=font)) if title else 0
    captions = {(r, c): lines for r, c, lines in _captions(rows, query, gallery)}
    # a column is as wide as its widest caption when the images are narrower (small --image-size)
    pitch = max([cell_w] + [int(measure.textlength(t, font=font)) + 2 for ls in captions.values() for t in ls])
    cols = max((len(r.entries) for r in rows), default=0)
    grid_w = _PAD + pitch + _QUERY_GAP + cols * (pitch + _GAP) - _GAP + _PAD
    width = max(grid_w, legend_w + 2 * _PAD, title_w + 2 * _PAD)
    height = _HEADER + _PAD + len(rows) * row_h
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((_PAD, 6), title, fill=(0, 0, 0), font=font)
    x = _PAD
    for key, text in LEGEND.items():
        color = QUERY_COLOR if key == "query" else COLORS[key]
        draw.rectangle([x, 26, x + 13, 39], fill=color)
        draw.text((x + 18, 26), text, fill=(0, 0, 0), font=font)
        x += int(draw.textlength(text, font=font)) + 34
    layout = GridLayout((width, height), _BORDER)

    def cell(row: int, col: int, x0: int, y0: int, img: Image.Image, color, lines: Sequence[str], kind: str):
        draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], fill=color)
        canvas.paste(img, (x0 + _BORDER, y0 + _BORDER))
        for i, text in enumerate(lines):
            draw.text((x0, y0 + cell_h + 2 + 13 * i), text, fill=(0, 0, 0), font=font)
        layout.cells[(row, col)] = (x0, y0, x0 + cell_w, y0 + cell_h)
        layout.kinds[(row, col)] = kind

    for r, qrow in enumerate(rows):
        y0 = _HEADER + _PAD + r * row_h
        cell(r, 0, _PAD, y0, _thumbnail(query.paths[qrow.query_index], (h, w)), QUERY_COLOR, captions[(r, 0)],
             "query")
        for c, entry in enumerate(qrow.entries, start=1):
            x0 = _PAD + pitch + _QUERY_GAP + (c - 1) * (pitch + _GAP)
            cell(r, c, x0, y0, _thumbnail(gallery.paths[entry.gallery_index], (h, w), faded=entry.kind == JUNK),
                 COLORS[entry.kind], captions[(r, c)], entry.kind)
    atomic_write(path, lambda f: canvas.save(f, format="PNG"))
    return layout


def _save_figure(fig: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # headless: no pyplot, no global backend

    FigureCanvasAgg(fig)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def plot_cmc(cmc: np.ndarray, metrics: Dict[str, float], path: Path, title: str = "") -> None:
    """The CMC curve (matching rate at each rank, %) as a PNG, with Rank-1 and mAP in the title."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    ranks = np.arange(1, len(cmc) + 1)
    ax.plot(ranks, np.asarray(cmc) * 100, color=(0.1, 0.35, 0.85), marker="o", markersize=3)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(1, max(2, len(cmc)))
    ax.set_ylim(0, 101)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"CMC {title}\nRank-1 {metrics.get('Rank-1', float('nan')):.1f}%  "
                 f"mAP {metrics.get('mAP', float('nan')):.1f}%".strip(), fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_roc(fpr: np.ndarray, tpr: np.ndarray, metrics: Dict[str, float], path: Path, title: str = "") -> None:
    """The ROC curve (log FPR axis) as a PNG, with the evaluator's ``TPR@FPR`` values in a box."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    keep = np.asarray(fpr) > 0
    ax.semilogx(np.asarray(fpr)[keep], np.asarray(tpr)[keep], color=(0.1, 0.35, 0.85), label="ROC")
    # the evaluator's numbers as text: sklearn picks the ROC point nearest each target, which on a small set can
    # lie far from it, so a marker at the target would misplace them
    shown = [f"{roc_key(t)}: {metrics[roc_key(t)]:.3f}" for t in FPR_TARGETS if roc_key(t) in metrics]
    if shown:
        ax.text(0.03, 0.97, "evaluator\n" + "\n".join(shown), transform=ax.transAxes, va="top", fontsize=8,
                bbox={"facecolor": "white", "edgecolor": (0.7, 0.7, 0.7)})
    ax.set_xlabel("FPR: matching pairs at distance >= t")
    ax.set_ylabel("TPR: other-identity pairs at distance >= t")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"ROC {title} (fastreid's TEST.ROC convention)".replace("  ", " "), fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def _rows_json(rows: Sequence[QueryRow], query: ExtractedFeatures, gallery: ExtractedFeatures) -> List[Dict]:
    return [{"query": query.paths[r.query_index], "pid": int(query.pids[r.query_index]),
             "camid": int(query.camids[r.query_index]), "ap": r.ap,
             "entries": [{"path": gallery.paths[e.gallery_index], "pid": int(gallery.pids[e.gallery_index]),
                          "camid": int(gallery.camids[e.gallery_index]), "distance": e.distance, "kind": e.kind,
                          "rank": e.rank} for e in r.entries]} for r in rows]


def visualize_ranks(query: ExtractedFeatures, gallery: ExtractedFeatures, cfg: Any, output_dir: str, *,
                    num_queries: int = 8, topk: int = 10, select: str = "first", seed: int = 0,
                    image_size: Optional[Tuple[int, int]] = None, dataset: str = "") -> VisualizationResult:
    """Evaluate, then write into ``output_dir``: ``ranks.png`` (a row per selected query), ``ranks.json`` (the
    same lists, with paths, kinds, ranks and distances, and the metrics), ``cmc.png`` and, with
    ``TEST.ROC.ENABLED``, ``roc.png``.  ``image_size`` (height, width) defaults to ``INPUT.SIZE_TEST``, at least
    128 pixels high.

    Raises:
        RetrievalInputError: bad options or features (see :func:`evaluate_ranking`).
        EvaluationDataError: no query has a match in the gallery.
    """
    if topk < 1:
        raise RetrievalInputError(f"--topk {topk}: must be at least 1")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise RetrievalInputError(f"--output {output_dir}: a file, not a folder")
    evaluation = evaluate_ranking(query, gallery, cfg, dataset=dataset)
    chosen = select_queries(evaluation.ap, num_queries, select, seed)
    if not chosen:
        raise EvaluationDataError(f"--select {select}: no query has a match in the gallery, nothing to draw")
    rows = ranked_rows(evaluation.provider, chosen, query, gallery, topk, evaluation.ap)
    if image_size is None:
        th, tw = (int(v) for v in cfg.INPUT.SIZE_TEST)
        scale = max(1.0, 128.0 / th)
        image_size = (int(round(th * scale)), int(round(tw * scale)))
    out.mkdir(parents=True, exist_ok=True)
    label = f"{dataset}, {cfg.TEST.METRIC}" if dataset else str(cfg.TEST.METRIC)
    files: Dict[str, Path] = {"ranks": out / "ranks.png", "cmc": out / "cmc.png"}
    title = f"{label}: {len(rows)} queries ({select}), top {topk}; Rank-1 {evaluation.metrics['Rank-1']:.1f}% " \
            f"mAP {evaluation.metrics['mAP']:.1f}%"
    layout = draw_rank_grid(rows, query, gallery, files["ranks"], image_size, title)
    plot_cmc(evaluation.cmc, evaluation.metrics, files["cmc"], dataset)
    if evaluation.roc is not None:
        files["roc"] = out / "roc.png"
        plot_roc(*evaluation.roc, evaluation.metrics, files["roc"], dataset)
    files["json"] = out / "ranks.json"
    payload = {"dataset": dataset, "metric": str(cfg.TEST.METRIC), "select": select, "topk": topk,
               "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v)
                           for k, v in evaluation.metrics.items()},
               "num_unmatched_queries": evaluation.num_unmatched,
               "colors": {k: list(v) for k, v in COLORS.items()}, "query_color": list(QUERY_COLOR),
               "rows": _rows_json(rows, query, gallery)}
    atomic_write(files["json"], lambda f: f.write((json.dumps(payload, indent=1) + "\n").encode("utf-8")))
    return VisualizationResult(files, evaluation, rows, layout)
