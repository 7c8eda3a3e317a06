"""The trace cache's key: a rerun may resume its chunks only if they came from the same model, questions and
sampling settings (the engine-backed path is exercised in test_probe_job.py)."""

import json

from probexit.training.trace_cache import open_cache

KEY = {"model": "abc", "sampling": {"seed": 0}, "questions": "q1"}


def test_chunks_of_the_same_key_are_kept(tmp_path):
    open_cache(tmp_path, KEY)
    (tmp_path / "chunk_00000.pt").write_bytes(b"traces")
    open_cache(tmp_path, dict(KEY))
    assert (tmp_path / "chunk_00000.pt").exists()


def test_a_key_holding_tuples_matches_itself_read_back(tmp_path):
    open_cache(tmp_path, {**KEY, "boundaries": {"extractors": ("tinyworld",)}})
    (tmp_path / "chunk_00000.pt").write_bytes(b"traces")
    open_cache(tmp_path, {**KEY, "boundaries": {"extractors": ("tinyworld",)}})
    assert (tmp_path / "chunk_00000.pt").exists()


def test_chunks_of_another_model_are_sampled_again(tmp_path, capsys):
    open_cache(tmp_path, KEY)
    (tmp_path / "chunk_00000.pt").write_bytes(b"traces")
    (tmp_path / "chunk_00001.pt").write_bytes(b"traces")
    open_cache(tmp_path, {**KEY, "model": "tuned"})
    assert not list(tmp_path.glob("chunk_*.pt"))
    assert json.loads((tmp_path / "key.json").read_text())["model"] == "tuned"
    captured = capsys.readouterr()
    assert "2 cached chunks came from other inputs" in captured.out + captured.err
