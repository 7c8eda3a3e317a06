"""probexit.kernels: fused GPU kernels, each with a torch reference and a dispatcher that works on CPU."""
from probexit.kernels.probe_score import ProbeWeights, score_boundary_rows, score_boundary_rows_reference

__all__ = ["ProbeWeights", "score_boundary_rows", "score_boundary_rows_reference"]
