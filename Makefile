# The set-up commands of the README. Each creates .venv/ when it is missing (scripts/ensure-venv.sh).
.PHONY: serve test test-fast lint venv

venv:
	@scripts/ensure-venv.sh

serve: venv
	.venv/bin/probexit serve $(ARGS)

# The whole CPU suite (gpu-marked tests skip themselves without CUDA).
test: venv
	.venv/bin/python -m pytest $(ARGS)

# Without the minutes-long engine and training runs.
test-fast: venv
	.venv/bin/python -m pytest -m "not slow" $(ARGS)

# ruff (pinned in the dev extra; settings in pyproject.toml): lint, and the format the code is kept in.
lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
