"""*Install model pack* (``sarcoreg:installmodelpack``) in a real QGIS, through ``processing.run`` and the worker."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback
from sarcoreg.models.card import MODEL_PATH_ENV, USER_MODELS_ENV, raw_files
from sarcoreg.models.packs import build_pack

pytestmark = pytest.mark.qgis

ALG = "sarcoreg:installmodelpack"
MODEL = "bnn-sar-optical"


@pytest.fixture()
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's model folder of this test; the worker inherits ``SARCOREG_MODELS``."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv(USER_MODELS_ENV, str(folder))
    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    return folder


def _run(params: dict[str, object]) -> dict[str, object]:
    import processing

    return processing.run(ALG, params, feedback=QgsProcessingFeedback())


def test_the_algorithm_is_registered_last(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    from sarcoreg.plugin.algorithms import all_algorithms

    assert all_algorithms()[-1].name() == "installmodelpack"
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and alg.displayName() == "Install model pack" and alg.group() == "Models"


def test_install_a_pack_then_again_then_a_tampered_one(sarcoreg_provider, user_dir: Path,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    pack = build_pack(MODEL, tmp_path / "packs")
    res = _run({"PACK": str(pack)})
    assert res["MODEL_NAME"] == MODEL and res["STATUS"] == "installed"
    assert Path(str(res["MODEL_FOLDER"])) == user_dir / MODEL
    card = json.loads((user_dir / MODEL / "cards" / f"{MODEL}.json").read_text(encoding="utf-8"))
    assert (user_dir / MODEL / raw_files(card)["main"][0]).is_file()  # either card layout
    assert _run({"PACK": str(pack)})["STATUS"] == "unchanged"

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:-1] + bytes([data[-1] ^ 1]) if info.filename.endswith(".onnx") else data)
    with pytest.raises(QgsProcessingException, match="checksum mismatch"):
        _run({"PACK": str(tampered), "FORCE": True})
    assert sorted(p.name for p in user_dir.iterdir()) == [MODEL]


def test_a_missing_pack_is_refused_naming_the_parameter(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QgsProcessingException, match=r"PACK"):
        _run({"PACK": str(tmp_path / "nope.zip")})
