"""logferry core: what logagent, logtransfer and logctl share (config schema, etcd keys, envelope)."""

__version__ = "0.2.0"
