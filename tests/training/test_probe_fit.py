import numpy as np
import pytest
import torch

from probexit.training.probe_fit import FitGrid, expected_calibration_error, fit_grid, predict, reliability_diagram


def separable(n, hidden=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, hidden, generator=generator) * 3 + 1
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=generator) > 1).float()
    return x, y


def test_grid_fits_a_signal_and_picks_by_validation():
    x, y = separable(1200)
    grid = FitGrid(widths=(0, 16), learning_rates=(3e-3,), weight_decays=(0.0,), alphas=(1.0,), max_epochs=40)
    best, summaries = fit_grid(x[:800], y[:800], x[800:1000], y[800:1000], grid)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[1000:].numpy(), predict(best.model, x[1000:])) > 0.9
    assert len(summaries) == 2 and best.validation_log_loss == min(s["validation_log_loss"] for s in summaries)


def test_one_class_is_refused():
    x, _ = separable(100)
    with pytest.raises(ValueError, match="both right and wrong"):
        fit_grid(x, torch.ones(100), x, torch.ones(100), FitGrid())


def test_ece():
    y = np.array([1, 0, 1, 0])
    assert expected_calibration_error(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.array([1.0, 1.0, 1.0, 1.0])) == pytest.approx(0.5)


def test_reliability_diagram_writes_a_png(tmp_path):
    reliability_diagram(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.6]), tmp_path / "r.png", "t")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
