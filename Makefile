# scopegate: `make serve` runs the demo server, `make test` runs lint and the test suite.
#
# Both create .venv on first use and reinstall the package only when pyproject.toml is
# newer than the stamp file, so repeated runs start at once.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.scopegate-installed

HOST ?= 127.0.0.1
PORT ?= 8000
# The public URL `make serve` announces (issuer, links) unless SCOPEGATE_BASE_URL is set.
# A wildcard bind is announced as loopback.
DEFAULT_BASE_URL = http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT)

# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k browser -x"`.
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: help serve test lint bench venv clean distclean

help:
	@echo "make serve   migrate, seed the demo organization, serve on http://$(HOST):$(PORT)"
	@echo "make test    ruff + pytest (-n $(PYTEST_WORKERS))"
	@echo "make lint    ruff only"
	@echo "make bench   authentication/authorization cost and HTTP throughput figures"
	@echo "make bench-agent   agent-token verify cost; mint rate at 10k vs 1M grant rows (PostgreSQL)"
	@echo "make bench-throughput   req/s vs plain and PyJWT routes (wrk); mint/approval rates vs 5b679ea"
	@echo "make bench-oauth   token endpoint: code exchanges and refreshes/s next to a bare route"
	@echo "make bench-mcp   one MCP tool call vs the same API route called directly (median, p99)"
	@echo "make bench-usage   request-path cost of scope-usage recording: on vs off (µs, req/s)"
	@echo "make bench-guard   the guard in remote mode: warm and cold requests vs no guard (µs)"
	@echo "make bench-fleet   mixed traffic vs serve --workers 1 and 2 on PostgreSQL + Redis (req/s, p50/p99)"
	@echo "make clean   remove caches and build output (distclean also removes .venv)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(STAMP)

serve: $(STAMP)
	SCOPEGATE_BASE_URL="$${SCOPEGATE_BASE_URL:-$(DEFAULT_BASE_URL)}" \
	  $(BIN)/scopegate serve --demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples

# pytest exits 5 when it collected no tests: treat that as a failure too, with a reason.
test: lint
	@status=0; $(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python bench/authz.py

clean:
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f $(STAMP)

distclean: clean
	rm -rf $(VENV)

# Agent-token costs: verification in process, and mint/s with 10 thousand vs 1 million
# write_grants rows on PostgreSQL (SCOPEGATE_BENCH_DATABASE_URL, default
# postgres@127.0.0.1:5432; scratch databases are created and dropped).
# `make bench-agent BENCH_AGENT_ARGS=--quick` uses smaller sizes.
BENCH_AGENT_ARGS ?=
.PHONY: bench-agent
bench-agent: $(STAMP)
	$(BIN)/python bench/agent.py $(BENCH_AGENT_ARGS)

# Throughput (wrk; `apt-get install wrk`): plain Starlette route, PyJWT check and scopegate's
# demo GET with each credential, then mint/approval rates of this tree vs a baseline
# revision served from a temporary git worktree. SQLite, plus PostgreSQL when
# SCOPEGATE_BENCH_DATABASE_URL is set. E.g. `make bench-throughput BENCH_RATES_ARGS=--quick`.
BENCH_THROUGHPUT_ARGS ?=
BENCH_RATES_ARGS ?=
.PHONY: bench-throughput
bench-throughput: $(STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_THROUGHPUT_ARGS)
	$(BIN)/python bench/rates.py $(BENCH_RATES_ARGS)

# Token endpoint rates (bench/oauth_tokens.py): SQLite, plus PostgreSQL when
# SCOPEGATE_BENCH_DATABASE_URL is set. E.g. `make bench-oauth BENCH_OAUTH_ARGS="--count 500"`.
BENCH_OAUTH_ARGS ?=
.PHONY: bench-oauth
bench-oauth: $(STAMP)
	$(BIN)/python bench/oauth_tokens.py $(BENCH_OAUTH_ARGS)

# MCP tool call latency next to the direct API call (bench/mcp_tool_call.py): SQLite, plus
# PostgreSQL when SCOPEGATE_BENCH_DATABASE_URL is set.
BENCH_MCP_ARGS ?=
.PHONY: bench-mcp
bench-mcp: $(STAMP)
	$(BIN)/python bench/mcp_tool_call.py $(BENCH_MCP_ARGS)

# Scope-usage recording on vs off in the same run (bench/scope_usage.py): Gate.check in
# process, then req/s of two servers that differ only in SCOPEGATE_SCOPE_USAGE_ENABLED
# (wrk). SQLite, plus PostgreSQL when SCOPEGATE_BENCH_DATABASE_URL is set.
# E.g. `make bench-usage BENCH_USAGE_ARGS="--rounds 1"`.
BENCH_USAGE_ARGS ?=
.PHONY: bench-usage
bench-usage: $(STAMP)
	$(BIN)/python bench/scope_usage.py $(BENCH_USAGE_ARGS)

# The guard in remote mode (bench/guard_remote.py): a route behind Guard.remote vs the
# same route unguarded, warm and cold, against a scopegate subprocess on SQLite.
# E.g. `make bench-guard BENCH_GUARD_ARGS="--iterations 2000 --cold 50"`.
.PHONY: bench-guard
bench-guard: $(STAMP)
	$(BIN)/python bench/guard_remote.py $(BENCH_GUARD_ARGS)

# Mixed traffic (agent- and user-token reads, mints, approvals) against `scopegate serve
# --workers 1` and then `--workers 2` on a scratch PostgreSQL database
# (SCOPEGATE_BENCH_DATABASE_URL, default postgres@127.0.0.1:5432) and Redis
# (SCOPEGATE_BENCH_REDIS_URL, default redis://127.0.0.1:6379/14): req/s, p50/p99, errors,
# scaling ratio. E.g. `make bench-fleet BENCH_FLEET_ARGS="--count 2000 --seconds 10"`.
BENCH_FLEET_ARGS ?=
.PHONY: bench-fleet
bench-fleet: $(STAMP)
	$(BIN)/python bench/fleet.py $(BENCH_FLEET_ARGS)
