"""The method catalog: one list read by the engine, the CLI and the matcher lookup.

A toy method registered through the catalog (and nowhere else) shows up in ``sarcoreg matchers``,
is accepted by ``sarcoreg coregister --method`` and is run by the engine on a real GeoTIFF pair.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sarcoreg.core import methods
from sarcoreg.core.cli import format_methods, main
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.matchers.base import Matcher, available_matchers, get_matcher
from sarcoreg.core.methods import MethodSpec, get_method, method_names, register_method, resolve

from tests.toy_method import TOY, ToyMatcher, toy_method

#: The built-in methods in catalog order: Processing enums store positions, so this only grows.
BUILTIN_ORDER = ["structural", "ncc", "mi", "sift", "rrlnet", "bnn", "aae", "shared"]


def test_builtin_order_is_append_only() -> None:
    assert method_names()[: len(BUILTIN_ORDER)] == BUILTIN_ORDER
    # the filtered lists of the Processing algorithms (coregister, batch, correspondence map, training)
    assert method_names(learned=False) == ["structural", "ncc", "mi", "sift"]
    assert method_names(kind="window", maps=True) == ["structural", "ncc", "mi", "rrlnet", "bnn", "aae"]
    assert method_names(trainable=True) == ["rrlnet", "bnn", "aae", "shared"]
    assert method_names(kind="keypoint") == ["shared"]


@pytest.mark.parametrize("name", [m for m in BUILTIN_ORDER if get_method(m).kind == "window"])
def test_every_window_method_resolves_to_its_matcher(name: str) -> None:
    spec = get_method(name)
    cls = resolve(spec.factory)
    assert issubclass(cls, Matcher) and cls.name == name and cls.description == spec.description
    assert isinstance(get_matcher(name), cls)


def test_learned_methods_name_their_model_and_training() -> None:
    for spec in methods.methods():
        assert spec.learned == (spec.default_model is not None), spec.name
        if spec.trainable:
            assert spec.card_writer and spec.training_command == spec.name
    from sarcoreg.core.matchers import aae, bnn, rrlnet

    assert (rrlnet.DEFAULT_MODEL, bnn.DEFAULT_MODEL, aae.DEFAULT_MODEL) == tuple(
        get_method(m).default_model for m in ("rrlnet", "bnn", "aae"))


def test_the_catalog_imports_without_numpy() -> None:
    code = ("import sys; import sarcoreg.core.methods as m; m.method_names(); "
            "bad = [x for x in ('numpy', 'torch', 'qgis', 'cv2') if x in sys.modules]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_bad_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="exists already"):
        register_method(MethodSpec("ncc", "window", "x:Y", "duplicate"))
    with pytest.raises(ValueError, match="kind"):
        MethodSpec("odd", "dense", "x:Y", "bad kind")
    with pytest.raises(ValueError, match="module:name"):
        MethodSpec("odd", "window", "no_colon", "bad factory")
    with pytest.raises(ValueError, match="only window methods"):
        register_method(MethodSpec("kp", "keypoint", "x:Y", "second keypoint search"))
    with pytest.raises(ValueError, match="is unknown; choose one of"):
        get_method("magic")
    assert "magic" not in method_names()


def test_a_toy_method_reaches_the_cli_and_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sarcoreg.core.demo import make_demo_inputs

    assert TOY not in method_names()
    ref, tgt = make_demo_inputs(tmp_path / "inputs", (2.0, 1.0))
    with toy_method():
        assert method_names()[-1] == TOY and TOY in available_matchers()
        assert main(["matchers"]) == 0
        listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
        assert listed == [*BUILTIN_ORDER, TOY]
        assert TOY in format_methods()
        # the CLI's --method accepts it (and an unknown name is refused by argparse's choices)
        with pytest.raises(SystemExit):
            main(["coregister", str(ref), str(tgt), "--out", str(tmp_path / "o"), "--method", "nope"])
        calls = ToyMatcher.calls
        res = coregister(ref, tgt, None, CoregOptions(method=TOY, transform="shift", spacing=8, window=64,
                                                      search_radius=8, reference_bands=[1, 2, 3]))
        assert ToyMatcher.calls > calls
        assert res.report["method"] == TOY and res.tiepoints.matcher == TOY
        assert np.hypot(*(np.asarray(res.report["median_shift_px"]) - [2.0, 1.0])) < 1.5
        out = tmp_path / "cli-out"
        code = main(["coregister", str(ref), str(tgt), "--out", str(out), "--method", TOY, "--transform", "shift",
                     "--spacing", "8", "--window", "64", "--radius", "8", "--reference-bands", "1", "2", "3"])
        assert code in (0, 3) and (out / "report.json").is_file()
    assert TOY not in method_names() and TOY not in available_matchers()
    with pytest.raises(ValueError, match="unknown matcher"):
        get_matcher(TOY)
