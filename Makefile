# Two commands: `make demo` and `make test`. Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# OpenBLAS and OpenMP oversubscribe a busy 2-core machine; one BLAS thread is the fast default.
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test install install-dev serve clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps re-run the install when pyproject.toml changes.
$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# PyTorch is pinned to the exact CPU build first: an open range would pull GBs of CUDA.
$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,torch]"
	touch $@

$(VENV)/.serve: $(VENV)/.core
	$(BIN)/pip install -q -e ".[serve]"
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev

demo: $(VENV)/.core
	$(BIN)/tastemaker demo
	@echo "\nTo run the HTTP service on the demo data: make serve  (then try the curl lines it prints)"

# The service on the bundled MovieLens: imports it into a SQLite store, trains the default pipeline, serves on :8000.
serve: $(VENV)/.serve
	mkdir -p reports/serve
	$(BIN)/tastemaker serve --seed-dataset movielens-latest-small --pipeline default \
		--store sqlite:///reports/serve/store.db --models-dir reports/serve/models

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
test: $(VENV)/.dev
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) reports artifacts .pytest_cache
