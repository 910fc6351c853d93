# Chaos targets; the main Makefile does `include mk/chaos.mk` (it defines VENV, PY, PYTEST_ARGS).
#
#   make chaos                      1,000,000 lines, full fault schedule, agents in network
#                                   namespaces, its own stack bound to the chaos bridge;
#                                   report printed and written to chaos/results/latest.json
#   make chaos CHAOS_LINES=50000    a smaller run (the schedule is keyed to progress, so it scales)
#   make chaos-short                the short run of `make test` alone, on a fresh stack
#   make chaos-net-down             remove a chaos bridge/namespaces left by a killed run

CHAOS_LINES ?= 1000000
CHAOS_RATE  ?= 2000
CHAOS_ARGS  ?=

.PHONY: chaos chaos-short chaos-net-down

chaos: $(VENV)/.installed ## chaos run: CHAOS_LINES (1,000,000) lines under kill -9/restarts/rotations; report in chaos/results/latest.json
	$(PY) -m chaos run --lines $(CHAOS_LINES) --rate $(CHAOS_RATE) $(CHAOS_ARGS)

chaos-short: $(VENV)/.installed ## the short chaos test of `make test` (30,000 lines), alone
	$(PY) -m pytest integration/test_chaos_short.py -v -s $(PYTEST_ARGS)

chaos-net-down: $(VENV)/.installed ## remove the chaos bridge and network namespaces left by a killed run
	$(PY) -m chaos net-down

MODEL_EXAMPLES ?= 20000
.PHONY: model-check
model-check: $(VENV)/.installed ## the file tracker against a model (issue 20): MODEL_EXAMPLES random runs of file operations and crashes; keeps .hypothesis/
	LOGFERRY_MODEL_EXAMPLES=$(MODEL_EXAMPLES) $(PY) -m pytest tests/test_tracker_model.py -q -p no:cacheprovider --hypothesis-show-statistics
