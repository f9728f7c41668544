"""Data: the GAN engine's seeded training loader, CPU-safe test loaders, the synthetic datasets (registered
in fastreid's ``DATASET_REGISTRY`` on import) and the helpers the method tools use."""
from . import datasets  # noqa: F401  (registers the synthetic datasets)
from . import open_reid  # noqa: F401  (registers the open-reid layout datasets: FD-GAN's prepared zips)
from .build import build_gan_train_loader, datasets_root

__all__ = ["build_gan_train_loader", "datasets_root"]
