"""probexit.training."""
