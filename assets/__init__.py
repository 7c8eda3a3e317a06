"""probexit.assets."""
