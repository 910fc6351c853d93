# Scale-out run (issue 14): a fleet of agent hosts in network namespaces, 1 → 2 → 3 logtransfers,
# a broker and an ES node killed under load, one hot file; its own stack (3 brokers, 3 ES nodes)
# bound to its own bridge. Included from the Makefile by `-include mk/*.mk`.
#
#   make scale                          the full run (~19 min here): 10 hosts x 100 files, 500 lines/s;
#                                       report in bench/results/scale-<date>.md and .json
#   make scale SCALE_ARGS=--quick       the whole plan, small, for development: 4 hosts x 10 files, 300 lines/s;
#                                       ~10 min on this shared machine (load 25-40), most of it waiting
#                                       for the brokers and ES nodes to restart after the kills
#   make scale SCALE_ARGS="--rate 1500 --skip hot"   other options: python -m bench.scale --help

SCALE_ARGS ?=

.PHONY: scale

scale: $(VENV)/.installed ## scale-out run: fleet, 1-3 transfers, broker/ES kills, hot file; bench/results/scale-<date>.md
	$(PY) -m bench.scale $(SCALE_ARGS)
