"""Integration tests: logferry against real etcd, ZooKeeper, Kafka and Elasticsearch servers."""
