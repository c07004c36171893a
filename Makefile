# certscan — the two set-up commands a newcomer runs are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck pytest debs bench bench-scale clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make demo: install, then sweep the built-in loopback lab into a fresh SQLite file.
demo: $(STAMP)
	$(BIN)/certscan demo

## make test: install everything the tests need (Debian packages too), lint, type-check, test.
test: $(STAMP) debs lint typecheck pytest

debs:
	bash scripts/install-debs.sh test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

## make bench: certscan vs nmap (and sslyze when installed) on a loopback lab in a private netns.
bench: $(STAMP)
	bash scripts/install-debs.sh bench
	CERTSCAN_BIN=$(CURDIR)/$(BIN)/certscan bash bench/run.sh $(BENCH_ARGS)

## make bench-scale: the inventory at SCALE endpoints (default 100000; minutes, not in `bench`).
## SCALE_DB: an inventory URL or SQLite path to fill (default: a fresh file under bench/out).
SCALE ?= 100000
bench-scale: $(STAMP)
	mkdir -p bench/out && rm -f bench/out/scale-$(SCALE).db*
	$(BIN)/python -m bench.scale --endpoints $(SCALE) --db $(or $(SCALE_DB),bench/out/scale-$(SCALE).db)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/out
