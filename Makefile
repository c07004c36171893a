# certscan — the two set-up commands a newcomer runs are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
CORE    := $(VENV)/.core-stamp
STAMP   := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck pytest debs bench bench-scale clean

# The demo needs certscan's core only (sweep, inventory, findings, reports): no extras, no
# test tools.
$(CORE): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(CORE)

# The tests need every extra (serve, zones, acme, postgres) and the test tools.
$(STAMP): pyproject.toml $(CORE)
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

## make demo: install the core, then sweep the built-in loopback lab into a fresh SQLite file.
demo: $(CORE)
	$(BIN)/certscan demo

## make test: install everything the tests need (Debian packages too), lint, type-check, test.
test: $(STAMP) debs lint typecheck pytest

debs:
	bash scripts/install-debs.sh test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache bench/out
