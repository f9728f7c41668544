"""Retrieval tools: features of images or dataset splits from any method's checkpoint
(:mod:`.feature_extraction`, ``tools/extract_features.py``) and ranked-list pictures with CMC/ROC curves
(:mod:`.rank_visualization`, ``tools/visualize_ranks.py``); ``docs/retrieval.md``."""
from .feature_extraction import (
    BAD_IMAGE_POLICIES,
    ExtractedFeatures,
    ImageSet,
    RetrievalInputError,
    atomic_write,
    dataset_images,
    extract_features,
    folder_images,
    model_features,
    read_features,
    write_features,
)
from .rank_visualization import GridLayout, RankingEvaluation, evaluate_ranking, visualize_ranks

__all__ = [
    "BAD_IMAGE_POLICIES",
    "ExtractedFeatures",
    "ImageSet",
    "RetrievalInputError",
    "atomic_write",
    "dataset_images",
    "extract_features",
    "folder_images",
    "model_features",
    "read_features",
    "write_features",
    "GridLayout",
    "RankingEvaluation",
    "evaluate_ranking",
    "visualize_ranks",
]
