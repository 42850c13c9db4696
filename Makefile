# Two commands for a fresh machine: `make serve` and `make test`.
# Both create (or reuse) .venv, install the project with its extras and make sure libopus is there.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.callbridge-installed
# mypyc builds of the per-frame modules (engine/native.py): rebuilt when any of them changes
NATIVE_SOURCES := $(shell $(PYTHON) -c 'from engine.native import MODULES; print(*(m.replace(".", "/") + ".py" for m in MODULES))' 2>/dev/null)
NATIVE := engine/_native.json
HOST ?= 127.0.0.1
PORT ?= 8765

.PHONY: serve test test-nojit test-pure lint native bench bench-quick check clean

$(STAMP): pyproject.toml scripts/ensure-libopus.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "callbridge: Python >= 3.11 is required (found %s)" % sys.version.split()[0])'
	@scripts/ensure-libopus.sh $(PYTHON)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

$(NATIVE): $(STAMP) $(NATIVE_SOURCES) engine/native.py scripts/build_native.py
	@$(BIN)/python scripts/build_native.py
	@touch $(NATIVE) 2>/dev/null || true

native: $(STAMP)
	@$(BIN)/python scripts/build_native.py

serve: $(STAMP) $(NATIVE)
	$(BIN)/callbridge serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest -q -p no:cacheprovider
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests/dsp
	CALLBRIDGE_PURE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests/core tests/language

test-pure: $(STAMP)
	CALLBRIDGE_PURE=1 $(BIN)/python -m pytest -q -p no:cacheprovider

test-nojit: $(STAMP)
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

check: $(STAMP) $(NATIVE)
	$(BIN)/callbridge check

bench: $(STAMP) $(NATIVE)
	@mkdir -p bench/results
	-@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q espeak-ng >/dev/null 2>&1; } || true
	$(BIN)/python -m pytest -q bench --benchmark-enable --benchmark-columns=min,median,mean,ops
	$(BIN)/python bench/core_report.py | tee bench/results/core_report.txt
	$(BIN)/python bench/dsp_report.py | tee bench/results/dsp_report.txt
	$(BIN)/python -m bench.load $(LOAD_ARGS)
	$(BIN)/python bench/report.py

bench-quick: $(STAMP) $(NATIVE)
	@mkdir -p bench/results
	$(BIN)/python bench/core_report.py | tee bench/results/core_report.txt
	$(BIN)/python -m bench.load --quick
	$(BIN)/python bench/report.py

clean:
	-@test -x $(BIN)/python && $(BIN)/python scripts/build_native.py --clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
