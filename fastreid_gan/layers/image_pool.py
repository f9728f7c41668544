"""History buffer of generated images (Shrivastava et al. 2017; CycleGAN's ``ImagePool``, SPGAN: size 50)."""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

__all__ = ["ImagePool"]


class ImagePool:
    """Keeps up to ``size`` past generated images and mixes them into the discriminator's fake batch.

    For each image of a query: while the pool is not full the image is stored and returned; afterwards, with
    probability 0.5 a uniformly chosen stored image is returned and replaced by the new one, otherwise the new
    image is returned. ``size == 0`` returns the input unchanged. Returned images are detached (the pool feeds
    the discriminator update only).

    Randomness comes from ``generator`` if given, else from a private ``torch.Generator`` seeded with ``seed``
    if given, else from torch's global RNG (so ``torch.manual_seed`` makes it reproducible). Not an
    ``nn.Module``: the pool is transient training state and stays out of checkpoints.
    """

    def __init__(self, size: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> None:
        if size < 0:
            raise ValueError("ImagePool size must be >= 0")
        self.size = int(size)
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.generator = generator
        self.images: List[Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (), generator=self.generator))

    def query(self, images: Tensor) -> Tensor:
        """Args: images (B, ...). Returns a (B, ...) batch mixing new and stored images (detached)."""
        images = images.detach()
        if self.size == 0:
            return images
        out: List[Tensor] = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self._rand() > 0.5:
                idx = self._randint(self.size)
                out.append(self.images[idx])
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.stack(out, 0)

    __call__ = query
