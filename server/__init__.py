"""probexit.server."""
