"""petcd: an etcd-compatible distributed key-value store."""

import os as _os

__version__ = "0.1.0"
# The etcd version whose API petcd implements; reported where etcd reports its own version.
ETCD_API_VERSION = "3.5.0"

# The member starts its client front-ends with fork+exec while gRPC threads run; gRPC's fork
# handlers serve only processes that keep using gRPC after fork() and log noise otherwise.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
