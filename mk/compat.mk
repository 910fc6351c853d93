# The compatibility matrix (issue 19, docs/compatibility.md): the end-to-end delivery test
# (integration/test_compat.py) on {Kafka 3.9 + ZooKeeper, Kafka 4 KRaft} x {Elasticsearch 8.19,
# Elasticsearch 9.x, OpenSearch 2.19}, etcd 3.4 on the Kafka 3 row and 3.6 on the Kafka 4 row.
# Each cell starts its own stack on free ports and stops it.
COMPAT_CELL ?= kafka4-opensearch
COMPAT_ARGS ?=

.PHONY: compat compat-one

compat: $(VENV)/.installed ## every cell of the version matrix; writes the table into docs/compatibility.md
	$(PY) -m integration.compat --cells all --write-doc $(COMPAT_ARGS)

compat-one: $(VENV)/.installed ## one cell (COMPAT_CELL=kafka4-opensearch: Kafka 4 KRaft, OpenSearch 2.19, etcd 3.6), for CI
	$(PY) -m integration.compat --cells $(COMPAT_CELL) $(COMPAT_ARGS)
