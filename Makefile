# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch==2.13.0 is pinned in pyproject: its CPU wheel lies on the build machines' disk.
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,eval,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/movierec demo $(ARGS)

# The tests start what they need themselves: SeaweedFS (S3) on loopback, function processes.
# The offline deployment checkers (checkov, kubernetes-validate, hadolint, actionlint, ...) go to .tools/;
# Prometheus and promtool come from Debian's package.
test: $(STAMP)
	bash scripts/install-deploy-tools.sh
	bash scripts/install-monitoring-tools.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit tests only, under a minute: no function processes, no S3 server, no external tools, no network training.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

# Benchmarks: each prints a table and writes benchmarks/results/<name>-<date>.md (not part of `make test`).
bench: $(STAMP)
	$(BIN)/python benchmarks/ingest_bench.py
	$(BIN)/python benchmarks/cloudevents_parse.py
	$(BIN)/python benchmarks/precompute_scale.py
	$(BIN)/python benchmarks/recommend_load.py

clean:
	rm -rf $(VENV) .pytest_cache
