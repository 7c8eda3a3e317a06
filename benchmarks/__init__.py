"""probexit.benchmarks: each benchmark writes its numbers to JSON; a report states numbers, never verdicts."""

from __future__ import annotations

from pathlib import Path


def display_path(path: str | Path) -> str:
    """A path as a report records it: relative to the working directory when it lies below it, so that a report
    names no machine's folders (a path outside stays as the user gave it)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
