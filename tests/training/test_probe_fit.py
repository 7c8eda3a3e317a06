import numpy as np
import pytest
import torch

from probexit.training.probe_fit import (
    FitGrid,
    expected_calibration_error,
    fit_grid,
    platt_calibrate,
    predict,
    reliability_diagram,
)


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


@pytest.mark.parametrize("width", [0, 16])
def test_platt_scaling_calibrates_a_class_weighted_probe_without_reordering_it(width):
    """Positives are 80% of the data; alpha 1 trains towards balanced classes, so the raw probe is
    under-confident. The rescale, folded into the last layer, makes it calibrated and keeps its ranking."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6000, 8, generator=generator)
    y = (torch.rand(6000, generator=generator) < torch.sigmoid(2 * x[:, 0] + 1.4)).float()
    grid = FitGrid(widths=(width,), learning_rates=(3e-3,), weight_decays=(0.0,), alphas=(1.0,), max_epochs=30)
    best, _ = fit_grid(x[:3000], y[:3000], x[3000:4500], y[3000:4500], grid)
    test_x, test_y = x[4500:], y[4500:].numpy()
    raw = predict(best.model, test_x)
    fitted = platt_calibrate(best.model, x[3000:4500], y[3000:4500])
    calibrated = predict(best.model, test_x)
    assert expected_calibration_error(test_y, raw) > 0.08
    assert expected_calibration_error(test_y, calibrated) < 0.04
    from sklearn.metrics import roc_auc_score

    assert fitted["a"] > 0 and fitted["b"] > 0
    assert roc_auc_score(test_y, calibrated) == pytest.approx(roc_auc_score(test_y, raw), abs=1e-4)
    from probexit.kernels.reference import score_boundary_rows_reference

    rows = torch.arange(len(test_x))  # the served weights carry the rescale
    served, _ = score_boundary_rows_reference(test_x, rows, best.model.weights(), torch.full((len(test_x),), 0.5))
    assert np.allclose(served.numpy(), calibrated, atol=1e-5)


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
