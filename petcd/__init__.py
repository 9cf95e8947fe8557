"""petcd: an etcd-compatible distributed key-value store."""

__version__ = "0.1.0"
