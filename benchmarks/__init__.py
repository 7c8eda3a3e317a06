"""probexit.benchmarks."""
