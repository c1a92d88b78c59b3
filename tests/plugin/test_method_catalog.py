"""The Processing algorithms read their method lists from the catalog, in its append-only order."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingContext
from sarcoreg.core.demo import make_demo_inputs

from tests.core.test_methods import BUILTIN_ORDER
from tests.toy_method import TOY, toy_method

pytestmark = pytest.mark.qgis

#: The METHOD enum of each algorithm as saved models and batch files know it (positions never change).
ENUMS = {
    "sarcoreg:coregister": BUILTIN_ORDER,
    "sarcoreg:extracttiepoints": BUILTIN_ORDER,
    "sarcoreg:batchcoregister": ["structural", "ncc", "mi", "sift"],
    "sarcoreg:correspondencemap": ["structural", "ncc", "mi", "rrlnet", "bnn", "aae"],
    "sarcoreg:trainmodel": ["rrlnet", "bnn", "aae", "shared"],
}


def _options(alg_id: str) -> list[str]:
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    assert alg is not None, alg_id
    return list(alg.parameterDefinition("METHOD").options())


def test_method_enums_keep_their_order(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    provider = QgsApplication.processingRegistry().providerById("sarcoreg")
    ids = {a.id() for a in provider.algorithms()}
    assert set(ENUMS) <= ids, sorted(ids)
    for alg_id, names in ENUMS.items():
        assert _options(alg_id) == names, alg_id


def test_a_toy_method_shows_up_in_processing(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt = make_demo_inputs(tmp_path, (2.0, 1.0))
    with toy_method():
        # a classical window method with maps: at the end of every list but the training one
        for alg_id, names in ENUMS.items():
            want = names if alg_id == "sarcoreg:trainmodel" else [*names, TOY]
            assert _options(alg_id) == want, alg_id
        alg = QgsApplication.processingRegistry().createAlgorithmById("sarcoreg:coregister")
        params = {"REFERENCE": str(ref), "TARGET": str(tgt), "METHOD": len(BUILTIN_ORDER)}
        job = alg._resolve(params, QgsProcessingContext())
        assert job["options"]["method"] == TOY and "matcher_options" not in job["options"]
    assert _options("sarcoreg:coregister") == BUILTIN_ORDER
