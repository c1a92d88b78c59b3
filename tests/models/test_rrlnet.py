"""RRL-Net network, pruning, ONNX export and the patch-model contract of the shipped models."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from sarcoreg.models import list_models, load
from sarcoreg.models.registry import check_card, find_card
from sarcoreg.models.rrlnet import (
    PAPER_PARAMETERS,
    RRLNet,
    RRLNetInference,
    count_parameters,
    eca_kernel,
    export_onnx,
)

from tests.conftest import RRLNET_TEST_MODEL, shared_data


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Give the BatchNorm layers non-trivial statistics so that eval-mode outputs are not flat."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="module")
def trained_like() -> RRLNet:
    """One unpruned network with non-trivial BatchNorm statistics, in eval mode (read-only)."""
    torch.manual_seed(0)
    net = RRLNet()
    _randomise_bn(net)
    return net.eval()


def test_parameter_count_matches_paper(trained_like: RRLNet) -> None:
    assert count_parameters(trained_like) == 12_816_740  # training form (MLPP branches present)
    net = copy.deepcopy(trained_like).prune_for_inference()
    assert net.pruned
    # The paper's 9,404,025 is a Keras count: it includes the BatchNorm moving means/variances.
    assert count_parameters(net, keras=True) == PAPER_PARAMETERS == 9_404_025
    assert count_parameters(net) == 9_394_105  # trainable parameters only
    assert set(net.inference_state_dict()) == set(net.state_dict())


def test_mgla_kernel_sizes_follow_the_eca_rule() -> None:
    # (C, H) of the five encoder stages -> (k_C, k_HW) as in the public code.
    assert [(eca_kernel(c), eca_kernel(h)) for c, h in ((16, 64), (32, 32), (64, 16), (128, 8), (256, 4))] == [
        (3, 3), (3, 3), (3, 3), (5, 3), (5, 1)
    ]


def test_pruning_leaves_main_output_unchanged(trained_like: RRLNet) -> None:
    net = copy.deepcopy(trained_like)
    a, b = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        full = net(a, b)
        assert len(full.logits) == 6 and full.recon_a is not None and full.recon_a.shape == (2, 1, 64, 64)
        net.prune_for_inference()
        pruned = net(a, b)
    assert len(pruned.logits) == 1 and pruned.recon_a is None
    torch.testing.assert_close(pruned.main, full.main, rtol=0, atol=0)
    assert float(full.main.std()) > 0  # the outputs differ between pairs: the check is not vacuous


def test_onnx_export_matches_torch(tmp_path: pytest.TempPathFactory, trained_like: RRLNet) -> None:
    net = copy.deepcopy(trained_like)
    from sarcoreg.training.patches import build_patch_pairs, visnir_pairs

    ps = build_patch_pairs(visnir_pairs(shared_data("vis-nir", "registration", "country"), ["0000"]), pairs_per_image=6)
    a = ps.images[:, 0].astype(np.float32) / 255.0
    b = ps.images[:, 1].astype(np.float32) / 255.0
    net.eval()
    with torch.no_grad():  # centre and spread the logits (x 20) so that the scores differ between pairs
        logit = net(torch.from_numpy(a[:, None]), torch.from_numpy(b[:, None]), main_only=True).main
        last = net.head.mlp[-1]
        last.bias.sub_(logit.mean())
        last.weight.mul_(20.0)
        last.bias.mul_(20.0)
    path = export_onnx(net, tmp_path / "rrl.onnx")  # type: ignore[operator]
    torch.save(net.inference_state_dict(), tmp_path / "rrl.pt")  # type: ignore[operator]
    ort_model = load(path, device="cpu")
    torch_model = load(tmp_path / "rrl.pt", device="cpu")  # type: ignore[operator]
    assert ort_model.device.startswith("onnxruntime") and torch_model.device == "torch:cpu"
    s_ort, s_torch = ort_model.score(a, b), torch_model.score(a, b)
    with torch.no_grad():
        direct = RRLNetInference(net).eval()(torch.from_numpy(a[:, None]), torch.from_numpy(b[:, None])).numpy()
    assert s_ort.shape == (6,) and s_ort.dtype == np.float32
    assert np.abs(s_ort - s_torch).max() < 1e-4
    assert np.abs(s_torch - direct).max() < 1e-6
    assert np.ptp(s_ort) > 1e-3  # the pairs' scores differ by far more than the tolerance


def test_model_folder_cards_are_listed_and_intact(rrlnet_model_folder) -> None:  # type: ignore[no-untyped-def]
    assert RRLNET_TEST_MODEL in list_models()
    card = find_card(RRLNET_TEST_MODEL)
    assert card.method == "rrlnet" and card.inputs["patch_size"] == 64
    assert card.path.parent == rrlnet_model_folder  # a relative file is relative to its model folder
    assert card.path.stat().st_size < 40 * 2**20
    assert check_card(card)["ok"], check_card(card)


def test_contract_batched_scores_on_real_patches(rrlnet_model_folder) -> None:  # type: ignore[no-untyped-def]
    from sarcoreg.training.patches import build_patch_pairs, visnir_pairs

    pairs = visnir_pairs(shared_data("vis-nir", "registration", "country"), ["0013"])  # held out in training
    ps = build_patch_pairs(pairs, pairs_per_image=24, seed=3)
    a = ps.images[:, 0].astype(np.float32) / 255.0
    b = ps.images[:, 1].astype(np.float32) / 255.0
    model = load(RRLNET_TEST_MODEL, device="cpu")
    assert model.patch_size == 64 and model.name == RRLNET_TEST_MODEL
    s = model.score(a, b)
    assert s.shape == (24,) and np.all((s >= 0) & (s <= 1))
    np.testing.assert_allclose(model.score(a[:5], b[:5]), s[:5], atol=1e-5)  # batch-independent


def test_contract_errors_name_the_problem(rrlnet_model_folder) -> None:  # type: ignore[no-untyped-def]
    model = load(RRLNET_TEST_MODEL, device="cpu")
    with pytest.raises(ValueError, match="64 x 64"):
        model.score(np.zeros((2, 32, 32)), np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match="two"):
        model.score(np.zeros((2, 64, 64)), np.zeros((3, 64, 64)))
    unknown = f"unknown model 'nope'; known models: .*{RRLNET_TEST_MODEL}.*SARCOREG_MODEL_PATH"
    with pytest.raises(ValueError, match=unknown):
        load("nope")
    with pytest.raises(ValueError, match="torch back end needs a .pt"):
        load(RRLNET_TEST_MODEL, backend="torch")


def test_loading_onnx_models_does_not_import_torch(rrlnet_model_folder) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys, numpy as np\n"
        "import sarcoreg.models as m\n"
        f"x = m.load('{RRLNET_TEST_MODEL}', device='cpu')\n"
        "s = x.score(np.zeros((1, 64, 64)), np.zeros((1, 64, 64)))\n"
        "assert s.shape == (1,)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_cli_models_list_names_first(rrlnet_model_folder) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run([sys.executable, "-m", "sarcoreg.core.cli", "models", "list"], capture_output=True,
                         text=True, timeout=120, check=True)
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    names = [r[0] for r in rows]
    assert RRLNET_TEST_MODEL in names
    assert all(r[1] == "rrlnet" and r[3] == "ok" for r in rows if r[0] == RRLNET_TEST_MODEL)
