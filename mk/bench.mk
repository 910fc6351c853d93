# Benchmarks (bench/, BENCHMARKS.md). Included from the Makefile: `include mk/bench.mk`.
# Each run starts its own stack (etcd x3, ZooKeeper, Kafka, Elasticsearch) in a temp dir and stops
# it at the end; it apt-get installs the peers it compares with (rsyslog, rsyslog-kafka,
# rsyslog-elasticsearch, kcat) when they are missing. BENCH_ARGS passes options (see
# `$(PY) -m bench --help`), e.g. `make bench BENCH_ARGS="--only throughput --skip-peers"`.

BENCH_ARGS ?=

.PHONY: bench bench-quick bench-help

bench: $(VENV)/.installed ## full benchmarks (~13 min on 2 quiet cores): writes BENCHMARKS.md's results and bench/results/latest.json
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: $(VENV)/.installed ## smoke run of every benchmark on ~100k lines (a few minutes): bench/results/quick.json
	$(PY) -m bench --quick $(BENCH_ARGS)

bench-help: $(VENV)/.installed ## the benchmark script's options
	$(PY) -m bench --help
