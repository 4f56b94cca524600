# jobkit — the commands a newcomer needs.
#   make demo    set up, run the smoke sweep (local Slurm when it starts, else the local executor), report
#   make test    set up, start the local Slurm cluster, run the whole test suite
#   make test-fast  the tests that need neither the cluster nor a long soak (a developer's 3-minute check)
# Others: make venv | slurm-up | slurm-down | slurm-purge | bench | clean
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
SLURM_STATE ?= $(CURDIR)/.slurm
PYTEST_ARGS ?=
DEMO_SWEEP ?= jobs/sweeps/smoke.toml
DEMO_NAME ?= smoke
DEMO_OUT ?= reports/$(DEMO_NAME)
BENCHES ?= $(sort $(wildcard bench/bench_*.py))
# Datasets are read by path, never copied: the shared folder beside this checkout when it exists.
ifneq ($(wildcard ../shared/data),)
export JOBKIT_DATA ?= $(abspath ../shared/data)
endif

.PHONY: venv slurm-up slurm-down slurm-purge test test-fast demo bench clean

# The venv is rebuilt when the package's metadata or pins change (stamp file).
venv: $(VENV)/.installed
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -c constraints.txt -e '.[test]'
	touch $@

slurm-up:
	slurm/up.sh $(SLURM_STATE) >/dev/null

slurm-down:
	slurm/down.sh $(SLURM_STATE)

slurm-purge:
	slurm/down.sh $(SLURM_STATE) --purge

# The test command (README, CI). Without a cluster the `slurm` tests skip — or fail under
# JOBKIT_REQUIRE_SLURM=1. pytest's exit code 5 (no test collected) is a failure like any other.
test: venv
	@if $(MAKE) --no-print-directory slurm-up; then \
	    export SLURM_CONF=$(SLURM_STATE)/etc/slurm.conf; \
	elif [ "$${JOBKIT_REQUIRE_SLURM:-0}" = 1 ]; then \
	    echo "make test: Slurm did not start (JOBKIT_REQUIRE_SLURM=1)" >&2; exit 1; \
	else echo "make test: Slurm did not start: tests marked 'slurm' will be skipped" >&2; fi; \
	rc=0; $(VENV)/bin/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

# Everything but the live-cluster (`slurm`) and `slow` tests (soak, kill -9, several processes, a long
# local queue): no cluster is started. `make test` still runs them all.
test-fast: venv
	@rc=0; $(VENV)/bin/python -m pytest -m "not slurm and not slow" $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

demo: venv
	@set -e; \
	if $(MAKE) --no-print-directory slurm-up; then \
	    export SLURM_CONF=$(SLURM_STATE)/etc/slurm.conf; echo "demo: on the local Slurm cluster"; \
	else echo "demo: Slurm could not be started: the local executor runs the sweep"; fi; \
	set -x; \
	$(VENV)/bin/jobkit submit $(DEMO_SWEEP) --executor auto --wait; \
	$(VENV)/bin/jobkit status $(DEMO_NAME); \
	$(VENV)/bin/jobkit collect $(DEMO_NAME) --out $(DEMO_OUT); \
	{ set +x; } 2>/dev/null; echo "report: $(DEMO_OUT)"

# Benchmarks print figures; they assert nothing.
bench: venv
	@-$(MAKE) --no-print-directory slurm-up
	@set -e; for b in $(BENCHES); do echo "== $$b"; $(VENV)/bin/python $$b; done

clean:
	rm -rf build dist *.egg-info .pytest_cache
