# Two entry points do all the set-up on a fresh machine:
#   make report   - create .venv if missing, install, print the equivalence table and
#                   write the HTML/JSON report to gru-report/
#   make test     - create .venv if missing, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CONSTRAINTS ?= constraints.txt
# Extra `gru-equiv report` options, e.g. REPORT_FLAGS=--gradients (what the GitHub workflow passes).
REPORT_FLAGS ?=
BENCH := $(BIN)/python -m pytest tests/benchmarks -o python_files='bench_*.py' -o python_functions='bench_*'

.PHONY: report test bench bench-smoke check-json clean

# Cache bytecode even where the environment says not to (PYTHONDONTWRITEBYTECODE=1, as on this project's
# CI machine): every process of a run (pytest's workers, gru-equiv's lanes, the CLI subprocesses the tests
# start) otherwise compiles this repository's modules again and pytest re-rewrites every test module.
# Measured here: collecting the tests takes 21 s with the cache and 24-25 s without. The caches are
# __pycache__ folders, which git ignores.
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[all,test]"
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/gru-equiv report --out gru-report $(REPORT_FLAGS)

check-json: $(STAMP)
	$(BIN)/gru-equiv check --json

# Two pytest-xdist workers (this project's CI machine has 2 cores); the files that share the matrix
# measurement are one xdist group, so it is measured once, and the tests that call the keras-torch, keras-jax
# and paddle worker processes are another, so each starts once. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# Timed benchmarks, saved under .benchmarks/ and compared with the previous saved run.
bench: $(STAMP)
	$(BENCH) --benchmark-autosave --benchmark-compare --benchmark-group-by=group --benchmark-columns=min,mean,stddev,rounds

# One round each, no timing: CI checks that the benchmarks run, never how fast.
bench-smoke: $(STAMP)
	$(BENCH) --benchmark-disable -q

clean:
	rm -rf $(VENV) .pytest_cache
