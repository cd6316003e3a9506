# The two commands: `make demo` and `make test`. Each creates .venv when missing and installs the project.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BASE_STAMP := $(VENV)/.installed-base
# the tested versions (scripts/constraints.py, `make constraints`): every install here is pinned to them
CONSTRAINTS := $(wildcard constraints.txt)

.PHONY: demo test test-all lint format venv clean constraints

# pip's output (its packaging warnings included) goes to $(VENV)/install.log; a failure shows the log's end.
# The demo installs the package alone; the test targets add the [dev] extra (pytest, ruff, dlib's ~100 MB
# landmark model, ...), so `make demo` on a fresh clone does not download what only the tests need.
define pip_install
	@echo "installing $(1) into $(VENV) (log: $(VENV)/install.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '$(1)'; } >>$(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "install failed; the whole log: $(VENV)/install.log" >&2; exit 1; }
endef

$(BASE_STAMP): pyproject.toml $(CONSTRAINTS)
	$(call pip_install,.)
	@touch $(BASE_STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(call pip_install,.[dev])
	@touch $(BASE_STAMP) $(STAMP)

venv: $(STAMP)

# Rewrites constraints.txt from the installed .venv (after a dependency change passes the tests).
constraints: $(STAMP)
	$(PY) scripts/constraints.py --out constraints.txt

# Fast suite (slow-marked tests skipped); pytest's exit 5 ("no tests ran") is not a failure.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# Every test, slow ones included: what .ci/run runs. --durations lists the slowest, so growth is seen.
test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 --timeout=1200 tests; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(STAMP)
	$(PY) -m ruff check fer_jax data_prep tests benchmarks configs scripts
	$(PY) -m ruff format --check fer_jax data_prep tests benchmarks configs scripts

format: $(STAMP)
	$(PY) -m ruff check --fix fer_jax data_prep tests benchmarks configs scripts
	$(PY) -m ruff format fer_jax data_prep tests benchmarks configs scripts

demo: $(BASE_STAMP)
	$(PY) scripts/demo.py

clean:
	rm -rf runs .pytest_cache
