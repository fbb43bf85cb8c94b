# Two entry points do all the set-up on a fresh machine:
#   make report   - create .venv if missing, install, print the equivalence table and
#                   write the HTML/JSON report to gru-report/
#   make test     - create .venv if missing, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: report test check-json clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/gru-equiv report --out gru-report

check-json: $(STAMP)
	$(BIN)/gru-equiv check --json

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
