"""petcd: an etcd-compatible distributed key-value store."""

import os as _os

__version__ = "0.1.0"
# The etcd version petcd behaves as; reported where etcd reports its own server version (Status, as
# etcd 3.5.1 answers "3.5.1"; the cluster version stays "3.5.0", as etcd's does).
ETCD_API_VERSION = "3.5.1"

# The member starts its client front-ends with fork+exec while gRPC threads run; gRPC's fork
# handlers serve only processes that keep using gRPC after fork() and log noise otherwise.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
