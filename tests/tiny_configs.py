"""Config templates of tiny models for the tests that build, save and evaluate several methods' models
(``str.format`` fields: ``train``, the tiny dataset trained and tested on; ``out``, the run folder)."""

#: DG-Net at test size: ResNet-18 E_a, narrow E_s / G / D, 64x32
DGNET = """MODEL:
  META_ARCHITECTURE: DGNet
  HEADS:
    NUM_CLASSES: 5
  BACKBONE:
    DEPTH: 18x
    PRETRAIN: False
  DGNET:
    STRUCTURE: {{WIDTHS: [4, 8, 8, 16], DIM: 16, N_RES: 1}}
    DECODER: {{N_RES: 1, MLP_DIM: 16}}
    DISCRIMINATOR: {{DIM: 8, N_RES: 1, N_SCALES: 2}}
INPUT:
  SIZE_TRAIN: [64, 32]
  SIZE_TEST: [64, 32]
DATASETS:
  NAMES: ("{train}",)
  TESTS: ("{train}",)
OUTPUT_DIR: {out}
"""
