"""Model packs (``models/packs.py``): build from a shipped card, install into a user folder, refuse bad packs."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sarcoreg.models import card as card_module
from sarcoreg.models.card import (
    MODEL_PATH_ENV,
    MODELS_DIR,
    USER_MODELS_ENV,
    find_card,
    typed_layout,
    user_models_dir,
)
from sarcoreg.models.packs import MANIFEST, PackError, build_pack, install_pack, installed_models, read_pack

MODEL = "bnn-sar-optical"


@pytest.fixture(scope="module")
def bnn_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pack of the shipped BNN (one .onnx, 4.7 MB), built once."""
    return build_pack(MODEL, tmp_path_factory.mktemp("packs"))


@pytest.fixture()
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user model folder (``SARCOREG_MODELS``) and no ``SARCOREG_MODEL_PATH``."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv(USER_MODELS_ENV, str(folder))
    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    return folder


@pytest.fixture()
def no_shipped_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package's models/ without cards or weights, as in the plugin zip."""
    empty = tmp_path / "package-models"
    empty.mkdir()
    monkeypatch.setattr(card_module, "MODELS_DIR", empty)
    return empty


def _patches(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.random((n, 64, 64), dtype=np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal((n, 64, 64)).astype(np.float32), 0, 1)
    b[n // 2:] = rng.random((n - n // 2, 64, 64), dtype=np.float32)
    return a, b


def _rewrite(pack: Path, out: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None = None,
             manifest_files: dict[str, dict] | None = None) -> Path:
    """A copy of ``pack`` with entries replaced (bytes), dropped (None) or added; manifest as given."""
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == MANIFEST and manifest_files is not None:
                manifest = json.loads(data)
                manifest["files"].update(manifest_files)
                data = json.dumps(manifest).encode()
            if info.filename in change:
                if change[info.filename] is None:
                    continue
                data = change[info.filename]  # type: ignore[assignment]
            dst.writestr(info.filename, data)
        for name, data in (add or {}).items():
            dst.writestr(name, data)
    return out


def test_pack_holds_card_files_and_manifest(bnn_pack: Path) -> None:
    manifest = read_pack(bnn_pack)
    assert manifest["name"] == MODEL and manifest["method"] == "bnn"
    assert set(manifest["files"]) == {f"cards/{MODEL}.json", f"{MODEL}.onnx"}
    shipped = find_card(MODEL)
    assert manifest["files"][f"{MODEL}.onnx"]["sha256"] == shipped.sha256
    with zipfile.ZipFile(bnn_pack) as zf:
        packed = json.loads(zf.read(f"cards/{MODEL}.json"))
    assert packed == json.loads((MODELS_DIR / "cards" / f"{MODEL}.json").read_text(encoding="utf-8"))


def test_user_models_dir_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(USER_MODELS_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert user_models_dir() == tmp_path / "data" / "sarcoreg" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert user_models_dir() == Path.home() / ".local" / "share" / "sarcoreg" / "models"
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "mine"))
    assert user_models_dir() == tmp_path / "mine"


def test_install_then_load_by_name_and_score(bnn_pack: Path, user_dir: Path, no_shipped_models: Path) -> None:
    from sarcoreg.models import load

    a, b = _patches()
    expected = load(str(MODELS_DIR / f"{MODEL}.onnx"), device="cpu").score(a, b)  # the shipped file, by path
    with pytest.raises(ValueError, match="sarcoreg models install"):
        find_card(MODEL)  # the plugin zip: nothing until the pack is installed
    result = install_pack(bnn_pack)
    assert result.status == "installed" and result.folder == user_dir / MODEL and result.shadowed_by is None
    assert find_card(MODEL).path == user_dir / MODEL / f"{MODEL}.onnx"
    model = load(MODEL, device="cpu")
    np.testing.assert_allclose(model.score(a, b), expected, rtol=0, atol=1e-6)
    rows = [r for r in installed_models() if r["name"] == MODEL]
    assert len(rows) == 1 and rows[0]["origin"] == "user" and rows[0]["active"]
    assert rows[0]["source"] == str(bnn_pack.resolve())
    assert [p.name for p in user_dir.iterdir()] == [MODEL]  # no staging folder left
    assert install_pack(bnn_pack).status == "unchanged"


def test_install_in_a_checkout_reports_the_shipped_model_first(bnn_pack: Path, user_dir: Path) -> None:
    result = install_pack(bnn_pack)
    assert result.status == "installed" and result.shadowed_by == MODELS_DIR
    assert find_card(MODEL).path == MODELS_DIR / f"{MODEL}.onnx"
    rows = {(r["origin"], r["active"]) for r in installed_models() if r["name"] == MODEL}
    assert rows == {("package", True), ("user", False)}


def test_other_contents_need_force(bnn_pack: Path, user_dir: Path, tmp_path: Path) -> None:
    install_pack(bnn_pack)
    folder = tmp_path / "edited"
    (folder / "cards").mkdir(parents=True)
    raw = typed_layout(json.loads((MODELS_DIR / "cards" / f"{MODEL}.json").read_text(encoding="utf-8")))
    raw["notes"] = "a newer card"
    raw["files"]["main"]["path"] = str(MODELS_DIR / raw["files"]["main"]["path"])
    (folder / "cards" / f"{MODEL}.json").write_text(json.dumps(raw), encoding="utf-8")
    newer = build_pack(folder / "cards" / f"{MODEL}.json", tmp_path / "newer")
    with pytest.raises(PackError, match="installed already .* --force"):
        install_pack(newer)
    installed = json.loads((user_dir / MODEL / "cards" / f"{MODEL}.json").read_text(encoding="utf-8"))
    assert installed["notes"] != "a newer card"
    assert install_pack(newer, force=True).status == "replaced"
    installed = json.loads((user_dir / MODEL / "cards" / f"{MODEL}.json").read_text(encoding="utf-8"))
    assert installed["notes"] == "a newer card" and installed["files"]["main"]["path"] == f"{MODEL}.onnx"
    assert sorted(p.name for p in user_dir.iterdir()) == [MODEL]


def test_tampered_weights_are_refused(bnn_pack: Path, user_dir: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bnn_pack) as zf:
        data = bytearray(zf.read(f"{MODEL}.onnx"))
    data[len(data) // 2] ^= 0xFF
    bad = _rewrite(bnn_pack, tmp_path / "tampered.zip", {f"{MODEL}.onnx": bytes(data)})
    with pytest.raises(PackError, match=f"checksum mismatch: '{MODEL}.onnx'"):
        install_pack(bad)
    assert list(user_dir.iterdir()) == []  # nothing installed, no staging folder left


def test_tampered_card_is_refused(bnn_pack: Path, user_dir: Path, tmp_path: Path) -> None:
    card_arc = f"cards/{MODEL}.json"
    with zipfile.ZipFile(bnn_pack) as zf:
        raw = typed_layout(json.loads(zf.read(card_arc)))
    raw["files"]["main"]["path"] = "../../outside.onnx"
    bad = _rewrite(bnn_pack, tmp_path / "card.zip", {card_arc: json.dumps(raw).encode()})
    with pytest.raises(PackError, match="checksum mismatch"):
        install_pack(bad)
    # the same card with a manifest that agrees: still refused, the card points outside the pack
    import hashlib

    body = json.dumps(raw).encode()
    bad = _rewrite(bnn_pack, tmp_path / "card2.zip", {card_arc: body},
                   manifest_files={card_arc: {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}})
    with pytest.raises(PackError, match="leaves the pack"):
        install_pack(bad)
    assert list(user_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil.onnx", "/tmp/evil.onnx", "cards/../../evil.onnx", "C:/evil.onnx",
                                  "cards\\..\\evil.onnx"])
def test_path_traversal_is_refused(bnn_pack: Path, user_dir: Path, tmp_path: Path, name: str) -> None:
    bad = _rewrite(bnn_pack, tmp_path / "traversal.zip", {}, add={name: b"x"},
                   manifest_files={name: {"sha256": "0" * 64, "size": 1}})
    with pytest.raises(PackError, match="refused"):
        install_pack(bad)
    assert not user_dir.exists() or list(user_dir.iterdir()) == []
    assert not (tmp_path / "evil.onnx").exists() and not Path("/tmp/evil.onnx").exists()


def test_links_and_foreign_files_are_refused(bnn_pack: Path, user_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.zip"
    _rewrite(bnn_pack, link, {})
    with zipfile.ZipFile(link, "a") as zf:
        info = zipfile.ZipInfo("weights.onnx")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(PackError, match="symbolic link"):
        install_pack(link)
    code = _rewrite(bnn_pack, tmp_path / "code.zip", {}, add={"hook.py": b"import os"},
                    manifest_files={"hook.py": {"sha256": "0" * 64}})
    with pytest.raises(PackError, match="not a card, ONNX graph"):
        install_pack(code)
    unlisted = _rewrite(bnn_pack, tmp_path / "unlisted.zip", {}, add={"extra.onnx": b"x"})
    with pytest.raises(PackError, match="not listed"):
        install_pack(unlisted)
    assert not user_dir.exists() or list(user_dir.iterdir()) == []


def test_pack_with_extra_files_installs_and_loads(user_dir: Path, no_shipped_models: Path, tmp_path: Path) -> None:
    """The AAE: a pair graph plus two encoder graphs (``extra_files``)."""
    from sarcoreg.models import load

    pack = build_pack(str(MODELS_DIR / "cards" / "aae-sar-optical.json"), tmp_path / "packs")
    result = install_pack(pack)
    card = find_card("aae-sar-optical")
    assert {p.parent for p, _ in card.all_files().values()} == {result.folder}
    a, b = _patches()
    assert load("aae-sar-optical", device="cpu").score(a, b).shape == (6,)


def test_cli_install_and_list(bnn_pack: Path, user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sarcoreg.core.cli import main

    assert main(["models", "install", str(bnn_pack)]) == 0
    assert "installed in" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    ours = [line for line in lines if line[0] == MODEL]
    assert [line[4] for line in ours] == ["package", "user"] and ours[0][3] == "ok"
    assert main(["models", "install", str(bnn_pack), "extra"]) == 2
    out = user_dir.parent / "built"
    assert main(["models", "pack", MODEL, "--out", str(out)]) == 0
    assert (out / f"{MODEL}.zip").read_bytes() == bnn_pack.read_bytes()  # packs are reproducible


def test_make_models_packs_the_package_folder_only(bnn_pack: Path, user_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``make models`` (``build_packs`` without names): every card of models/, not the installed ones."""
    from sarcoreg.models.packs import build_packs

    install_pack(bnn_pack)  # an installed model is not packed again
    package = tmp_path / "package"
    (package / "cards").mkdir(parents=True)
    raw = typed_layout(json.loads((MODELS_DIR / "cards" / f"{MODEL}.json").read_text(encoding="utf-8")))
    raw["name"] = "copy"
    raw["files"]["main"]["path"] = str(MODELS_DIR / raw["files"]["main"]["path"])
    (package / "cards" / "copy.json").write_text(json.dumps(raw), encoding="utf-8")
    monkeypatch.setattr(card_module, "MODELS_DIR", package)
    assert [p.name for p in build_packs(tmp_path / "dist")] == ["copy.zip"]
    packed = read_pack(tmp_path / "dist" / "copy.zip")["files"]
    assert packed[f"{MODEL}.onnx"]["sha256"] == raw["files"]["main"]["sha256"]
