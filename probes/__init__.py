"""probexit.probes."""
