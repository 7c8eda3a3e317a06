"""probexit.cli."""
