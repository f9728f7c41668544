"""Test fixture: a minimal, runnable GAN method for the engine's tests (not installed with the package).

Importing this module registers

* ``EngineToyGAN`` (META_ARCH_REGISTRY): a DG-Net-shaped toy — 3 sub-networks ("gen", "dis", "id"),
  2 phases ("dis" on detached fakes, then "gen" updating gen + id with one backward), its own optimizer
  defaults (a ``gen`` network like DG-Net's, with other settings: the per-method-defaults test uses that);
* ``EngineToyReID`` (DATASET_REGISTRY): a tiny generated re-id dataset (32x16 PNGs written under
  ``<root>/engine_toy_reid`` on first use; identities differ by colour and stripe position).

Call :func:`add_engine_toy_config` on a config that has the engine keys.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from fastreid.config import CfgNode as CN
from fastreid.config import configurable
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_gan.engine import GANMetaArch, LossWeight, Phase, StepContext, loss_weights_from_config, optimizer_node

__all__ = ["EngineToyGAN", "EngineToyReID", "add_engine_toy_config", "generate_engine_toy_images", "toy_optimizers"]

TOY_SIZE = (32, 16)  # H, W of the generated images


def toy_optimizers() -> Dict[str, CN]:
    """The toy's optimizer defaults (``EngineToyGAN.default_optimizers``)."""
    return {
        "gen": optimizer_node(name="Adam", base_lr=2e-3, betas=(0.5, 0.999)),
        "dis": optimizer_node(name="Adam", base_lr=1e-3, betas=(0.5, 0.999)),
        "id": optimizer_node(name="SGD", base_lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                             lr_factors=("classifier=2",)),
    }


def add_engine_toy_config(cfg: CN) -> None:
    """``MODEL.ENGINE_TOY`` keys (the toy's own namespace only)."""
    toy = CN()
    toy.FEAT_DIM = 16
    toy.PHASES = ["dis", "gen"]
    toy.GEN_EVERY = 1
    toy.NAN_ITER = -1  # >= 0: loss_recon becomes NaN at that iteration (tests the engine's check)
    toy.WEIGHTS = CN()
    toy.WEIGHTS.RECON = [5.0]
    toy.WEIGHTS.GAN = [0.0, 1.0, 4, 8]  # off for 4 iterations, then ramped in over 8
    toy.WEIGHTS.ID = [1.0]
    toy.WEIGHTS.DIS = [1.0]
    cfg.MODEL.ENGINE_TOY = toy


class _ToyEncoder(nn.Module):
    def __init__(self, feat_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, feat_dim, 3, 2, 1), nn.BatchNorm2d(feat_dim), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(feat_dim, max(num_classes, 1))

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        feat = self.body(x)
        return feat, self.classifier(self.dropout(feat))


class _ToyGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 3, 3, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _ToyDiscriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@META_ARCH_REGISTRY.register()
class EngineToyGAN(GANMetaArch):
    """Toy GAN: ``gen`` reconstructs a noisy input, ``dis`` tells real from fake (LSGAN), ``id`` classifies
    identities and gives the retrieval features."""

    @configurable
    def __init__(self, *, feat_dim: int, num_classes: int, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 phases: Sequence[str], gen_every: int, nan_iter: int, loss_weights: Dict[str, LossWeight]) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), persistent=False)
        self.gen = _ToyGenerator()
        self.dis = _ToyDiscriminator()
        self.id_net = _ToyEncoder(feat_dim, num_classes)
        self._phase_names: Tuple[str, ...] = tuple(phases)
        self._gen_every = int(gen_every)
        self._nan_iter = int(nan_iter)
        self._weights = dict(loss_weights)

    @classmethod
    def from_config(cls, cfg: CN) -> Dict[str, Any]:
        toy = cfg.MODEL.ENGINE_TOY
        return {
            "feat_dim": toy.FEAT_DIM,
            "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "phases": toy.PHASES,
            "gen_every": toy.GEN_EVERY,
            "nan_iter": toy.NAN_ITER,
            "loss_weights": loss_weights_from_config(toy.WEIGHTS),  # RECON -> loss_recon, ...
        }

    # --- GANMetaArch
    @classmethod
    def default_optimizers(cls) -> Dict[str, CN]:
        return toy_optimizers()

    def sub_networks(self) -> Dict[str, nn.Module]:
        return {"gen": self.gen, "dis": self.dis, "id": self.id_net}

    def phases(self) -> Sequence[Phase]:
        known = {"dis": Phase("dis", ("dis",)), "gen": Phase("gen", ("gen", "id"), every=self._gen_every)}
        return [known[name] for name in self._phase_names]

    def loss_weights(self) -> Dict[str, LossWeight]:
        return dict(self._weights)

    def _normalize(self, images: Tensor) -> Tensor:
        return (images - self.pixel_mean) / self.pixel_std  # never in place: the batch is shared

    def forward_train(self, batch: Dict[str, Any], ctx: StepContext) -> Dict[str, Any]:
        x = self._normalize(batch["images"])
        _, logits = self.id_net(x)
        fake = self.gen(x + 0.1 * torch.randn_like(x))  # randomness: exercises the RNG save/restore
        return {"x": x, "fake": fake, "logits": logits}

    def phase_losses(self, phase: str, batch: Dict[str, Any], state: Dict[str, Any],
                     ctx: StepContext) -> Dict[str, Tensor]:
        x, fake = state["x"], state["fake"]
        if phase == "dis":
            loss = (self.dis(x) - 1).pow(2).mean() + self.dis(fake.detach()).pow(2).mean()
            return {"loss_dis": loss}
        losses = {"loss_recon": (fake - x).abs().mean(), "loss_id": F.cross_entropy(state["logits"], batch["targets"])}
        if ctx.weight("loss_gan") != 0:  # skip the discriminator pass while the term is switched off
            losses["loss_gan"] = (self.dis(fake) - 1).pow(2).mean()
        if ctx.iteration == self._nan_iter:
            losses["loss_recon"] = losses["loss_recon"] * float("nan")
        return losses

    def forward(self, batched_inputs: Any) -> Tensor:
        images = batched_inputs["images"] if isinstance(batched_inputs, dict) else batched_inputs
        feat, _ = self.id_net(self._normalize(images.to(self.device).float()))
        return feat

    def visualize(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        x = self._normalize(batch["images"])
        fake = self.gen(x)
        to_unit = lambda t: (t * self.pixel_std + self.pixel_mean) / 255.0  # noqa: E731
        return {"real": to_unit(x), "fake": to_unit(fake)}


def _toy_image(pid: int, camid: int, k: int) -> np.ndarray:
    rng = np.random.RandomState(pid * 1000 + camid * 100 + k)
    palette = np.random.RandomState(pid).randint(40, 216, size=3)
    image = np.empty((*TOY_SIZE, 3), dtype=np.float64)
    image[:] = palette
    stripe = 2 + (pid * 5) % (TOY_SIZE[0] - 6)
    image[stripe : stripe + 4] = 255 - palette
    image += 20 * camid + rng.normal(0, 12, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_engine_toy_images(root: str, train_ids: int = 6, images_per_id: int = 4,
                               test_ids: int = 4) -> Dict[str, List[Tuple[str, int, int]]]:
    """Write (once) and list the toy dataset: ``{"train"|"query"|"gallery": [(path, pid, camid)]}``."""
    folder = os.path.join(root, "engine_toy_reid")
    os.makedirs(folder, exist_ok=True)
    splits: Dict[str, List[Tuple[str, int, int]]] = {"train": [], "query": [], "gallery": []}
    plan = [("train", pid, k % 2, k) for pid in range(train_ids) for k in range(images_per_id)]
    for pid in range(100, 100 + test_ids):
        plan.append(("query", pid, 0, 0))
        plan += [("gallery", pid, 1, k) for k in range(1, 4)]  # >= 10 gallery images: Rank-10 is defined
    for split, pid, camid, k in plan:
        path = os.path.join(folder, f"{split}_{pid:04d}_c{camid}_{k}.png")
        if not os.path.isfile(path):
            tmp = f"{path}.{os.getpid()}.tmp"
            Image.fromarray(_toy_image(pid, camid, k)).save(tmp, format="PNG")
            os.replace(tmp, path)  # concurrent ranks never see a half-written file
        splits[split].append((path, pid, camid))
    return splits


@DATASET_REGISTRY.register()
class EngineToyReID(ImageDataset):
    """The generated toy dataset (6 training identities x 4 images; 4 test identities: 4 queries, 12 gallery images)."""

    dataset_name = "enginetoy"

    def __init__(self, root: str = "datasets", **kwargs: Any) -> None:
        splits = generate_engine_toy_images(root)
        train = [(path, f"{self.dataset_name}_{pid}", f"{self.dataset_name}_{camid}")
                 for path, pid, camid in splits["train"]]
        super().__init__(train, splits["query"], splits["gallery"], **kwargs)
