# One place for the commands CI and developers run. .ci/run calls `make lint`, `make test`
# and `make wheel`.
PYTHON ?= python
PIP ?= $(PYTHON) -m pip
MATURIN ?= maturin

.PHONY: install build wheel test test-rust test-python fuzz lint format bench clean

## install: the package in editable mode with every extra needed to test and lint it
install:
	$(PIP) install "maturin>=1.9.4,<2"
	$(PIP) install -e ".[dev]" --no-build-isolation

## build: rebuild the native module in place after changing src/
build:
	$(PIP) install -e . --no-build-isolation --no-deps

## wheel: a manylinux2014 wheel (glibc >= 2.17, CPython >= 3.10) into dist/, linked by zig
## (`pip install ".[wheel]"`; zig is found through this Python), checked by auditwheel
wheel:
	rm -f dist/clasp_rs-*.whl
	CARGO_ZIGBUILD_PYTHON_PATH="$$($(PYTHON) -c 'import sys; print(sys.executable)')" \
		$(MATURIN) build --release --zig --compatibility manylinux2014 --out dist
	$(PYTHON) tools/check_wheel.py dist/clasp_rs-*.whl

## test: the engine's cargo tests (no libpython) and the whole pytest suite
test: test-rust test-python

test-rust:
	cargo test

test-python:
	$(PYTHON) -m pytest

## fuzz: the suite's fuzz targets for longer, with fresh seeds, each batch in its own process;
## CLASP_RS_FUZZ_SECONDS (default 1200) and CLASP_RS_FUZZ_EXAMPLES (inputs per batch, 300)
fuzz:
	$(PYTHON) tests/fuzz/fuzz_run.py --seconds $${CLASP_RS_FUZZ_SECONDS:-1200} \
		--examples $${CLASP_RS_FUZZ_EXAMPLES:-300}

## lint: formatting, clippy (engine alone and with the binding), ruff, mypy, stub check
lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features python -- -D warnings
	ruff check .
	ruff format --check .
	$(PYTHON) -m mypy python/clasp_rs
	$(PYTHON) -m mypy.stubtest clasp_rs._clasp_rs

## format: apply cargo fmt and ruff format
format:
	cargo fmt
	ruff format .
	ruff check --fix .

## bench: criterion benches of the engine, then every Python benchmark in benches/
bench:
	cargo bench --bench engine
	@for script in benches/bench_*.py; do \
		[ -e "$$script" ] || continue; \
		echo "== $$script"; \
		$(PYTHON) "$$script" || exit 1; \
	done

clean:
	cargo clean
	rm -rf .pytest_cache .ruff_cache .mypy_cache .hypothesis
