"""Deterministic procedural synthetic person re-id datasets (the project's built-in data).

Two domains with disjoint identities, ``market`` (6 cameras, bright summer) and ``duke`` (8 cameras, overcast
winter), written in Market-1501's layout with FD-GAN pose files and an ``annotations.json``::

    from fastreid_gan.data.synthetic import write_dataset, load_annotations, region_masks
    path = write_dataset("datasets", domain="market", preset="tiny")

See ``tools/make_synthetic.py`` for the command line and ``fastreid_gan.data.datasets`` for the fastreid
dataset classes that generate on first use.
"""
from .annotations import load_annotations, read_pose_file, region_masks, write_pose_file
from .domains import DOMAINS, Camera, Domain, get_domain, make_camera
from .identity import Identity, sample_identity
from .presets import PRESETS, Preset, get_preset
from .render import Rendered, Structure, render_image, sample_structure
from .skeleton import KEYPOINT_NAMES, LIMBS
from .writer import default_folder, ensure_dataset, plan_dataset, read_meta, write_dataset

__all__ = [
    "DOMAINS", "KEYPOINT_NAMES", "LIMBS", "PRESETS", "Camera", "Domain", "Identity", "Preset", "Rendered",
    "Structure", "default_folder", "ensure_dataset", "get_domain", "get_preset", "load_annotations",
    "make_camera", "plan_dataset", "read_meta", "read_pose_file", "region_masks", "render_image", "sample_identity",
    "sample_structure", "write_dataset", "write_pose_file",
]
