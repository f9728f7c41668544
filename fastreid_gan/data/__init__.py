"""."""
from .build import build_gan_train_loader
from . import datasets  # registers the synthetic datasets, clearer missing-dataset errors
