"""The real-services stack: etcd (3 members), ZooKeeper + Kafka, Elasticsearch as local processes.

Used by `make stack-up`, the integration tests, `make demo` and the benchmarks. See
``python -m integration.stack --help``.
"""

from .services import Stack, StackError, StackOptions, default_workdir

__all__ = ["Stack", "StackError", "StackOptions", "default_workdir"]
