"""petcd-benchmark: etcd 3.5 ``tools/benchmark`` for any etcd v3 cluster, petcd or etcd.

A client of the gRPC API only (it imports petcd.proto and nothing of the server): ``cli`` (flags),
``conn`` (endpoints, TLS, auth, leader), ``loads`` + ``run`` (request workloads, worker processes),
``watch`` (the watch benchmark), ``ratelimit`` (--rate's token bucket), ``report`` (the summary).
"""
