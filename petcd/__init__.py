"""petcd: an etcd-compatible distributed key-value store."""

__version__ = "0.1.0"
# The etcd version whose API petcd implements; reported where etcd reports its own version.
ETCD_API_VERSION = "3.5.0"
