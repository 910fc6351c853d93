"""logagent: tails files named by the host's collect list in etcd and produces each line to Kafka."""
