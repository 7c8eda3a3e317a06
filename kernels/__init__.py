"""probexit.kernels."""
