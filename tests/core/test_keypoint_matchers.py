"""Keypoint matchers on real imagery with a known homography, offline weights, missing-weight errors.

Images: the EPFL RGB-NIR pair ``country/0000`` (aligned, identity) from ../shared/data, reduced to
320 x 212 so that the whole file runs in about 20 s on two CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from sarcoreg.core.keypoints import (
    WeightsNotFoundError,
    available_keypoint_matchers,
    make_keypoint_matcher,
)
from sarcoreg.core.keypoints.metrics import pair_metrics

from tests.conftest import shared_data

OFFLINE = ["sift", "xfeat", "xfeat-lighterglue", "disk-lightglue", "aliked-lightglue"]
SIZE = (320, 212)  # (W, H)


def _load(kind: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    path = shared_data("vis-nir", "registration", "country", f"0000_{kind}.jpg")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR if kind == "rgb" else cv2.IMREAD_GRAYSCALE)
    if kind == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty], [0, 0, 1.0]])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", OFFLINE)
def test_matcher_recovers_known_homography(name: str) -> None:
    nir = _load("nir")
    T = _similarity(5.0, 1.04, 9.0, -6.0)  # image A -> image B, (x, y) pixels
    warped = cv2.warpPerspective(nir**0.8, T, SIZE)  # a photometric change as well
    m = make_keypoint_matcher(name, max_keypoints=512, device="cpu")
    assert m.name == name and m.device == "cpu"
    res = m.match(nir, warped)
    assert res.matcher == name and res.device == "cpu"
    assert res.n_keypoints_a > 50 and res.n_keypoints_b > 50 and len(res) >= 30
    pm = pair_metrics(res.pts_a, res.pts_b, nir.shape, T=T)
    assert pm.success and pm.ace < 2.0, (name, pm.ace)
    assert pm.cmr[3] > 0.7, (name, pm.cmr)


@pytest.mark.parametrize("name", ["disk-lightglue", "aliked-lightglue"])
def test_cross_spectral_rgb_nir_shift(name: str) -> None:
    """RGB (3 channels) against NIR (gray) shifted by (+7.5, -4.25) px."""
    rgb, nir = _load("rgb"), _load("nir")
    T = np.array([[1, 0, 7.5], [0, 1, -4.25], [0, 0, 1.0]])
    res = make_keypoint_matcher(name, max_keypoints=512, device="cpu").match(rgb, cv2.warpPerspective(nir, T, SIZE))
    pm = pair_metrics(res.pts_a, res.pts_b, nir.shape, T=T)
    assert pm.cmr[3] > 0.5, pm.cmr
    good = np.linalg.norm(res.pts_b - res.pts_a - [7.5, -4.25], axis=1) < 3
    np.testing.assert_allclose(np.median(res.pts_b[good] - res.pts_a[good], axis=0), [7.5, -4.25], atol=1.0)


def test_size_cap_maps_points_back_to_full_resolution() -> None:
    big = (640, 424)
    nir = _load("nir", big)
    T = _similarity(3.0, 1.0, 20.0, 12.0)
    m = make_keypoint_matcher("sift", max_keypoints=1024, max_size=320)
    res = m.match(nir, cv2.warpPerspective(nir, T, big))
    assert res.scale_a == pytest.approx(0.5) and res.scale_b == pytest.approx(0.5)
    pm = pair_metrics(res.pts_a, res.pts_b, nir.shape, T=T)
    assert pm.ace < 3.0 and pm.cmr[3] > 0.8
    assert res.pts_a[:, 0].max() > 330  # full-resolution coordinates


def test_available_and_bad_inputs() -> None:
    names = available_keypoint_matchers()
    assert set(OFFLINE) | {"roma", "dedode"} == set(names)
    with pytest.raises(ValueError, match="unknown keypoint matcher"):
        make_keypoint_matcher("superglue")
    m = make_keypoint_matcher("sift")
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        m.match(np.zeros((64, 64, 4), np.float32), np.zeros((64, 64), np.float32))
    empty = m.match(np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32))
    assert len(empty) == 0 and empty.pts_a.shape == (0, 2)


def test_missing_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="roma_outdoor.pth"):
        make_keypoint_matcher("roma")
    with pytest.raises(WeightsNotFoundError, match="dedode_detector_L.pth"):
        make_keypoint_matcher("dedode", weights=str(tmp_path))
    (tmp_path / "dedode_detector_L.pth").write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="dedode_descriptor_B.pth"):
        make_keypoint_matcher("dedode", weights=str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="dedode_descriptor_G.pth"):
        make_keypoint_matcher("dedode", weights=str(tmp_path), descriptor="G")
    (tmp_path / "roma_outdoor.pth").write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="dinov2_vitl14_pretrain.pth"):
        make_keypoint_matcher("roma", weights=str(tmp_path))
    (tmp_path / "dinov2_vitl14_pretrain.pth").write_bytes(b"")
    try:
        import romatch  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ModuleNotFoundError, match="pip install romatch"):
            make_keypoint_matcher("roma", weights=str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="no-such.pth"):
        make_keypoint_matcher("xfeat", weights=str(tmp_path / "no-such.pth"))


def test_offline_no_download_attempted(tmp_path: Path) -> None:
    """Every wheel-weight matcher builds and matches with a dead proxy and an empty private torch hub."""
    hub = tmp_path / "torch-home"
    hub.mkdir()
    code = textwrap.dedent(
        """
        import json, sys, cv2, numpy as np, torch
        torch.set_num_threads(1)
        from sarcoreg.core.keypoints import make_keypoint_matcher
        img = cv2.resize(cv2.imread(sys.argv[1], cv2.IMREAD_GRAYSCALE), (160, 106)).astype(np.float32) / 255
        out = {}
        for name in sys.argv[2].split(","):
            m = make_keypoint_matcher(name, max_keypoints=64, device="auto")
            out[name] = [m.device, len(m.match(img, img))]
        out["hub"] = torch.hub.get_dir()
        print(json.dumps(out))
        """
    )
    env = dict(os.environ)
    env.update(
        TORCH_HOME=str(hub),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        KORNIA_DOWNLOAD_TIMEOUT="0.5",
        HF_HUB_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",
    )
    image = shared_data("vis-nir", "registration", "country", "0000_nir.jpg")
    cmd = [sys.executable, "-c", code, str(image), ",".join(OFFLINE)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Downloading" not in proc.stderr and "Transient failure" not in proc.stderr, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["hub"].startswith(str(hub))
    for name in OFFLINE:
        assert out[name][0] == "cpu" and out[name][1] > 0, (name, out[name])
    assert not any(p.is_file() for p in hub.rglob("*")), list(hub.rglob("*"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", [n for n in OFFLINE if n != "sift"])
def test_matcher_on_cuda(name: str) -> None:
    """The same known-homography case on a CUDA device (run with ``./run_tests.sh -m gpu``)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    nir = _load("nir")
    T = _similarity(5.0, 1.04, 9.0, -6.0)
    m = make_keypoint_matcher(name, max_keypoints=512, device="cuda")
    assert m.device.startswith("cuda")
    res = m.match(nir, cv2.warpPerspective(nir**0.8, T, SIZE))
    assert res.device.startswith("cuda")
    pm = pair_metrics(res.pts_a, res.pts_b, nir.shape, T=T)
    assert pm.success and pm.ace < 2.0 and pm.cmr[3] > 0.7, (name, pm.ace, pm.cmr)


def test_dedode_runs_from_user_files(tmp_path: Path) -> None:
    """DeDoDe L + B from files in a folder (random weights here: no trained ones are available)."""
    import torch
    from kornia.feature import DeDoDe

    torch.manual_seed(0)
    model = DeDoDe(detector_model="L", descriptor_model="B")
    torch.save(model.detector.state_dict(), tmp_path / "dedode_detector_L.pth")
    torch.save(model.descriptor.state_dict(), tmp_path / "dedode_descriptor_B.pth")
    m = make_keypoint_matcher("dedode", weights=str(tmp_path), max_keypoints=256, device="cpu")
    assert m.name == "dedode" and m.device == "cpu"
    img = _load("nir", (160, 106))
    res = m.match(img, img)
    assert res.n_keypoints_a == res.n_keypoints_b and res.pts_a.shape == res.pts_b.shape
    np.testing.assert_allclose(res.pts_a, res.pts_b)  # an image matched with itself
    assert np.all((res.pts_a >= 5) & (res.pts_a <= [160 - 6, 106 - 6]))  # the 5-px border is dropped
