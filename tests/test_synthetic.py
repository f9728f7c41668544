"""fastreid_gan.data.synthetic: skeleton visibility, rendering, region masks, determinism, on-disk layout
(read back by fastreid's stock Market1501), FD-GAN pose files, annotations and the two domains."""
import glob
import hashlib
import json
import os
import re
import threading

import numpy as np
import pytest

import fastreid_gan  # noqa: F401  (fastreid compat first)
from fastreid.data.datasets import Market1501

from fastreid_gan.data.synthetic import (
    KEYPOINT_NAMES,
    PRESETS,
    ensure_dataset,
    get_domain,
    get_preset,
    load_annotations,
    make_camera,
    plan_dataset,
    read_pose_file,
    region_masks,
    render_image,
    sample_identity,
    sample_structure,
    write_dataset,
)
from fastreid_gan.data.synthetic import skeleton as sk
from fastreid_gan.data.synthetic.scene import camera_view, make_panorama
from fastreid_gan.data.synthetic.writer import RenderContext, render_spec

NAME_RE = re.compile(r"^(-1|\d{4})_c(\d)s1_(\d{6})_00\.jpg$")
SPLITS = ("bounding_box_train", "query", "bounding_box_test")


@pytest.fixture(scope="module")
def market_tiny(tmp_path_factory):
    """tiny market written under the folder name stock Market1501 expects."""
    root = tmp_path_factory.mktemp("market")
    path = write_dataset(root, "market", "tiny", folder="Market-1501-v15.09.15")
    return root, path


def _file_hashes(path):
    out = {}
    for f in sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True)):
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                out[os.path.relpath(f, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _scene(domain, cam):
    return camera_view(make_panorama(domain, 0, 128, 64), cam, 64)


def test_keypoint_order_is_openpose_coco18():
    assert KEYPOINT_NAMES == (
        "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip", "r_knee",
        "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
    )


def test_face_visibility_follows_facing():
    k = sk.KP
    front, back, right, left = (sk.face_visibility(sk.FACINGS[f]) for f in ("front", "back", "right", "left"))
    assert front.all()
    assert not back[k["nose"]] and not back[k["r_eye"]] and not back[k["l_eye"]]
    assert right[k["r_eye"]] and not right[k["l_eye"]] and right[k["r_ear"]] and not right[k["l_ear"]]
    assert left[k["l_eye"]] and not left[k["r_eye"]]


def test_walking_pose_grounds_the_lower_ankle_and_swings_the_legs():
    a, b = sk.walking_pose(np.pi / 2), sk.walking_pose(3 * np.pi / 2)
    for pose in (a, b):
        ankles = pose.keypoints[[sk.KP["r_ankle"], sk.KP["l_ankle"]], 1]
        assert ankles.max() == pytest.approx(sk.ANKLE_Y)
    # half a cycle apart the right ankle moves from in front of the body to behind it
    assert a.keypoints[sk.KP["r_ankle"], 2] > 0.05 > -0.05 > b.keypoints[sk.KP["r_ankle"], 2]


def _render_many(domain_name, n, **kw):
    domain = get_domain(domain_name)
    out = []
    cams = [make_camera(domain, c, 0) for c in range(1, domain.num_cams + 1)]
    scenes = {c.index: _scene(domain, c) for c in cams}
    for i in range(n):
        cam = cams[i % len(cams)]
        ident = sample_identity(domain, 1 + i, 0)
        st = sample_structure(np.random.default_rng(i), cam, ident, **kw)
        out.append((ident, st, render_image(ident, st, cam, domain, scenes[cam.index], 128, 64)))
    return out


def test_visible_keypoints_land_on_the_drawn_body():
    checked = 0
    for domain in ("market", "duke"):
        for ident, st, r in _render_many(domain, 24):
            body = np.pad(r.person_mask, 1)
            for k in np.flatnonzero(r.visible):
                x, y = np.round(r.keypoints[k]).astype(int)
                assert body[y:y + 3, x:x + 3].any(), (domain, ident.pid, KEYPOINT_NAMES[k], st)
                assert not r.occluder_mask[y, x]
                checked += 1
            # invisible points are either outside the image, under the occluder or hidden by the body
            h, w = r.person_mask.shape
            inside = (r.keypoints[:, 0] > -0.5) & (r.keypoints[:, 0] < w - 0.5) & \
                     (r.keypoints[:, 1] > -0.5) & (r.keypoints[:, 1] < h - 0.5)
            assert not (r.visible & ~inside).any()
            assert r.image.shape == (128, 64, 3) and r.image.dtype == np.uint8
    assert checked > 500


def test_facing_back_hides_the_face_and_side_view_hides_far_limbs():
    domain = get_domain("market")
    cam = make_camera(domain, 1, 0)
    scene = _scene(domain, cam)
    # no bag: a bag hanging on the near side would rightly hide the near hip
    ident = next(i for i in (sample_identity(domain, p, 0) for p in range(1, 50)) if not i.bag)
    base = sample_structure(np.random.default_rng(0), cam, ident, occlusion=False)
    k = sk.KP
    from dataclasses import replace

    back = render_image(ident, replace(base, facing="back", yaw=180.0), cam, domain, scene, 128, 64)
    assert not back.visible[[k["nose"], k["r_eye"], k["l_eye"]]].any()
    assert back.visible[[k["neck"], k["r_hip"], k["l_hip"], k["r_knee"]]].all()
    front = render_image(ident, replace(base, facing="front", yaw=0.0), cam, domain, scene, 128, 64)
    assert front.visible[[k["nose"], k["r_eye"], k["l_eye"], k["r_shoulder"], k["l_shoulder"]]].all()
    # facing right the person's right side is towards the camera: the left shoulder and hip are behind the body
    right = render_image(ident, replace(base, facing="right", yaw=90.0), cam, domain, scene, 128, 64)
    assert right.visible[[k["r_shoulder"], k["r_hip"], k["nose"], k["r_eye"]]].all()
    assert not right.visible[[k["l_shoulder"], k["l_hip"], k["l_eye"]]].any()


def test_occluder_hides_keypoints_under_it():
    hidden = 0
    for ident, st, r in _render_many("market", 16, occlusion=True):
        assert st.occluder != "none" and r.occluder_mask.any()
        for kx, ky in np.round(r.keypoints).astype(int):
            if 0 <= kx < 64 and 0 <= ky < 128 and r.occluder_mask[ky, kx]:
                hidden += 1
        assert not any(r.occluder_mask[y, x] for x, y in np.round(r.keypoints[r.visible]).astype(int))
    assert hidden > 0


def test_region_masks_read_the_clothes_colours():
    """Torso / legs masks from the visible keypoints sit on the top / bottom garments (no camera effects)."""
    for domain_name in ("market", "duke"):
        domain = get_domain(domain_name)
        pan = make_panorama(domain, 0, 128, 64)
        checked = empty = 0
        for pid in range(1, 61):
            ident = sample_identity(domain, pid, 0)
            if ident.top_pattern != "plain":
                continue
            cam = make_camera(domain, 1 + pid % domain.num_cams, 0)
            st = sample_structure(np.random.default_rng(pid), cam, ident, occlusion=False)
            r = render_image(ident, st, cam, domain, camera_view(pan, cam, 64), 128, 64, camera_effects=False)
            kp = np.concatenate([r.keypoints, r.visible[:, None]], axis=1)
            masks = region_masks(kp, 128, 64)
            if masks["torso"].sum() < 8 or masks["legs"].sum() < 8:
                empty += 1  # a bare arm over the torso in a side view
                continue
            for name, rgb in (("torso", ident.top_rgb), ("legs", ident.bottom_rgb)):
                got = np.median(r.image[masks[name]].astype(float), axis=0)
                # directional light shades the body by up to ~20%
                assert np.abs(got - np.asarray(rgb)).max() < 0.2 * max(rgb) + 10, (pid, name, got, rgb, st)
            checked += 1
        assert checked >= 20 and empty <= 0.15 * (checked + empty), (domain_name, checked, empty)


def test_region_masks_handle_missing_points():
    kp = np.full((18, 2), -1.0)
    masks = region_masks(kp, 128, 64)
    assert not masks["torso"].any() and not masks["legs"].any()
    with pytest.raises(ValueError):
        region_masks(np.zeros((17, 2)), 128, 64)


def test_identities_depend_only_on_seed_domain_pid():
    market = get_domain("market")
    assert sample_identity(market, 5, 0) == sample_identity(market, 5, 0)
    assert sample_identity(market, 5, 0) != sample_identity(market, 5, 1)
    assert sample_identity(market, 5, 0) != sample_identity(market, 6, 0)
    # one image renders identically whatever else is generated around it
    spec = plan_dataset(market, get_preset("tiny"), 0)[3]
    a = render_spec(spec, RenderContext(market, 0, 128, 64))[0].image
    b = render_spec(spec, RenderContext(market, 0, 128, 64))[0].image
    assert np.array_equal(a, b)


def test_palettes_make_identities_share_colours():
    market = get_domain("market")
    ids = [sample_identity(market, p, 0) for p in range(1, 151)]
    tops = [i.top_colour for i in ids]
    assert len(set(tops)) <= len(market.tops) <= 12
    # the most common top colour is worn by many people: colour alone cannot tell them apart
    assert max(tops.count(t) for t in set(tops)) >= 15


def test_domains_have_disjoint_identities_and_cameras():
    market, duke = get_domain("market"), get_domain("duke")
    assert (market.num_cams, duke.num_cams) == (6, 8)
    m = {sample_identity(market, p, 0).signature() for p in range(1, 301)}
    d = {sample_identity(duke, p, 0).signature() for p in range(1, 301)}
    assert len(m) == 300 and len(d) == 300 and not (m & d)
    for domain in (market, duke):
        cams = {s.cam for s in plan_dataset(domain, get_preset("small"), 0)}
        assert cams == set(range(1, domain.num_cams + 1))


@pytest.mark.parametrize("domain", ["market", "duke"])
def test_plan_follows_the_market_protocol(domain):
    dom = get_domain(domain)
    pre = get_preset("small")
    specs = plan_dataset(dom, pre, 0)
    train = [s for s in specs if s.split == "train"]
    query = [s for s in specs if s.split == "query"]
    gallery = [s for s in specs if s.split == "gallery"]
    assert len({s.pid for s in train}) == pre.num_train_ids
    assert {s.pid for s in query} == set(range(pre.num_train_ids + 1, pre.num_train_ids + pre.num_test_ids + 1))
    assert not ({s.pid for s in train} & {s.pid for s in query + gallery})
    gal = {}
    for s in gallery:
        gal.setdefault(s.pid, set()).add(s.cam)
    for q in query:
        assert gal[q.pid] - {q.cam}, "every query has a gallery match in another camera"
    per_id = {}
    for q in query:
        per_id.setdefault(q.pid, set()).add(q.cam)
    assert np.mean([len(c) for c in per_id.values()]) >= 2.0
    assert sum(s.pid == 0 for s in gallery) == pre.num_distractors
    assert sum(s.pid == -1 for s in gallery) == pre.num_junk
    assert 6 <= len(train) / pre.num_train_ids <= 10


def test_presets_stay_within_market_id_range():
    for name, pre in PRESETS.items():
        assert pre.num_train_ids + pre.num_test_ids <= 1501, name
    tiny = get_preset("tiny")
    assert tiny.num_train_ids == 12 and tiny.num_test_ids == 8
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        get_preset("huge")


def test_same_seed_same_bytes(tmp_path):
    a = write_dataset(tmp_path / "a", "duke", "tiny", height=64, width=32)
    b = write_dataset(tmp_path / "b", "duke", "tiny", height=64, width=32)
    ha, hb = _file_hashes(a), _file_hashes(b)
    assert len(ha) > 100 and ha == hb
    c = write_dataset(tmp_path / "c", "duke", "tiny", height=64, width=32, seed=1)
    assert _file_hashes(c) != ha


def test_layout_file_names_and_stock_market1501(market_tiny):
    root, path = market_tiny
    meta = json.load(open(os.path.join(path, "synthetic.json")))
    counts = meta["counts"]
    names = {split: sorted(os.listdir(os.path.join(path, split))) for split in SPLITS}
    for split, files in names.items():
        for f in files:
            assert NAME_RE.match(f), f
    assert len(names["bounding_box_train"]) == counts["train"]
    assert len(names["query"]) == counts["query"]
    assert len(names["bounding_box_test"]) == counts["gallery"]
    assert any(f.startswith("-1_c") for f in names["bounding_box_test"])
    assert any(f.startswith("0000_c") for f in names["bounding_box_test"])

    data = Market1501(root=str(root))
    assert len(data.train) == counts["train"]
    assert len(data.query) == counts["query"]
    assert len(data.gallery) == counts["gallery"] - counts["junk"]   # stock Market1501 drops junk (-1)
    train_pids = {p for _, p, _ in data.train}
    assert len(train_pids) == 12 and all(p.startswith("market1501_") for p in train_pids)
    assert {c for _, _, c in data.query} <= set(range(6))
    q_pids = {p for _, p, _ in data.query}
    assert len(q_pids) == 8 and q_pids <= {p for _, p, _ in data.gallery}
    assert 0 in {p for _, p, _ in data.gallery}
    for _, pid, cam in data.query:
        assert any(p == pid and c != cam for _, p, c in data.gallery)


def test_pose_files_match_images_and_annotations(market_tiny):
    _, path = market_tiny
    ann = load_annotations(path)
    images = [f for split in SPLITS for f in os.listdir(os.path.join(path, split))]
    poses = os.listdir(os.path.join(path, "poses"))
    assert sorted(p[:-4] for p in poses) == sorted(f[:-4] for f in images)
    assert set(ann["images"]) == set(images)
    visible_total = 0
    for f in images:
        text = open(os.path.join(path, "poses", f[:-4] + ".txt")).read().splitlines()
        assert len(text) == 18
        for line in text:
            assert re.fullmatch(r"-1 -1|\d+(\.\d)? \d+(\.\d)?", line), line
        yx = read_pose_file(os.path.join(path, "poses", f[:-4] + ".txt"))
        rec = ann["images"][f]
        kp = np.asarray(rec["keypoints"])
        vis = kp[:, 2] == 1
        assert np.array_equal(vis, yx[:, 0] >= 0)
        assert np.allclose(yx[vis][:, ::-1], kp[vis, :2], atol=0.051)
        assert (yx[vis, 0] <= 127).all() and (yx[vis, 1] <= 63).all()
        visible_total += int(vis.sum())
        if rec["kind"] == "background":
            assert not vis.any()
    assert visible_total > 10 * len(images)


def test_annotations_hold_identity_attributes_and_structure(market_tiny):
    _, path = market_tiny
    ann = load_annotations(path)
    assert ann["meta"]["keypoint_names"] == list(KEYPOINT_NAMES)
    assert set(ann["identities"]) == set(range(1, 21))
    for ident in ann["identities"].values():
        for key in ("top_rgb", "bottom_rgb", "shoes_rgb", "hair_rgb", "skin_rgb"):
            assert len(ident[key]) == 3 and all(0 <= v <= 255 for v in ident[key])
        assert ident["top_pattern"] in ("plain", "stripes", "checks", "logo", "two_tone")
        assert ident["hair_length"] in ("short", "long")
    kinds = set()
    for name, rec in ann["images"].items():
        for key in ("split", "pid", "camid", "facing", "phase", "position", "scale", "occluded", "keypoints"):
            assert key in rec, (name, key)
        assert rec["facing"] in ("front", "back", "left", "right")
        assert name.startswith("-1_" if rec["pid"] == -1 else f"{rec['pid']:04d}_c{rec['camid']}")
        kinds.add(rec["kind"])
    assert {"person", "junk"} <= kinds


def test_write_refuses_an_existing_folder_and_ensure_checks_parameters(tmp_path):
    path = write_dataset(tmp_path, "market", "tiny", height=64, width=32)
    with pytest.raises(FileExistsError):
        write_dataset(tmp_path, "market", "tiny", height=64, width=32)
    assert ensure_dataset(tmp_path, "market", "tiny", height=64, width=32) == path
    with pytest.raises(ValueError, match="seed=0"):
        ensure_dataset(tmp_path, "market", "tiny", height=64, width=32, seed=3)
    write_dataset(tmp_path, "market", "tiny", height=64, width=32, seed=3, overwrite=True)
    assert json.load(open(path / "synthetic.json"))["seed"] == 3


def test_concurrent_generation_leaves_one_complete_copy(tmp_path):
    results, errors = [], []

    def work():
        try:
            results.append(ensure_dataset(tmp_path, "duke", "tiny", height=64, width=32))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert sorted(os.listdir(tmp_path)) == ["synthetic-duke-tiny"]  # temporary folders are gone
    ref = write_dataset(tmp_path / "ref", "duke", "tiny", height=64, width=32)
    assert _file_hashes(results[0]) == _file_hashes(ref)

