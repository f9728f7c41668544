"""History buffer of generated images (Shrivastava et al. 2017; CycleGAN's ``ImagePool``, SPGAN: size 50)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

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
    if given, else from torch's global RNG (so ``torch.manual_seed`` makes it reproducible).

    Not an ``nn.Module``: the pool is training state, not weights. :meth:`state_dict` / :meth:`load_state_dict`
    save and restore it (the stored images, and the private generator's state when it has one), so a method can
    put it in its training checkpoint and resume exactly (``docs/engine.md`` §7: SPGAN's pools).
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
                out.append(self.images[idx].to(image.device))  # a restored pool may live on the CPU
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.stack(out, 0)

    __call__ = query

    def state_dict(self) -> Dict[str, Any]:
        """``{"size", "images" (N, ...) on the CPU, N <= size (an empty pool: shape (0,)), "generator" (the
        private generator's state, or None)}``: tensors and numbers only (``torch.load(weights_only=True)``)."""
        images = torch.stack(self.images).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "images": images,
                "generator": self.generator.get_state() if self.generator is not None else None}

    def load_state_dict(self, state: Dict[str, Any], device: Optional[torch.device] = None) -> None:
        """Restore :meth:`state_dict`'s output (images moved to ``device`` when given).

        Raises:
            ValueError: the state is of a pool of another size, holds more images than that, or has a generator
                state where this pool has none (or the reverse).
        """
        size, images = int(state["size"]), state["images"]
        if size != self.size:
            raise ValueError(f"ImagePool: the saved pool has size {size}, this one {self.size} (a config with another "
                             f"pool size, e.g. MODEL.SPGAN.POOL_SIZE, cannot resume it)")
        count = int(images.shape[0]) if images.dim() > 1 else 0
        if count > self.size:
            raise ValueError(f"ImagePool: the saved pool holds {count} images, more than its size {self.size}")
        generator = state.get("generator")
        if (generator is None) != (self.generator is None):
            raise ValueError("ImagePool: the saved pool and this one disagree on a private generator (seed=/generator= "
                             "given to one of them only)")
        if generator is not None:
            self.generator.set_state(generator)
        self.images = [img.clone() if device is None else img.to(device, copy=True) for img in images[:count]]
