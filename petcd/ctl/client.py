"""The gRPC client petcdctl talks through: etcd's v3 API over the stubs in petcd/proto.

It behaves as etcdctl 3.5's client where a user can see it: a call waits for a connection until
the command timeout (``context deadline exceeded``), a failed unary call logs etcd's client warning
line on stderr, server errors print as etcd's texts, and ``--user`` authenticates once and sends
the token with every call.
"""

from __future__ import annotations

import errno
import getpass
import json
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from petcd.ctl.cli import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, CtlExit
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc

# Go's names of the gRPC status codes, as grpc-go prints them ("rpc error: code = OutOfRange ...").
_GO_CODES = {
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

DEADLINE = "context deadline exceeded"


class RpcFailure(Exception):
    """A failed call; ``str()`` is what etcdctl prints after ``Error: ``."""

    def __init__(self, text: str, code: grpc.StatusCode | None = None, details: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class TLSConfig:
    cacert: str = ""
    cert: str = ""
    key: str = ""
    skip_verify: bool = False
    insecure_transport: bool = True


@dataclass(frozen=True)
class ClientConfig:
    endpoints: tuple[str, ...]
    dial_timeout: float = 2.0
    command_timeout: float = 5.0
    tls: TLSConfig = TLSConfig()
    user: str = ""
    password: str = ""
    keepalive_time: float = 2.0
    keepalive_timeout: float = 6.0


def split_user(user: str, password: str) -> tuple[str, str]:
    """``--user name:pass`` or ``--user name --password pass`` (prompting when neither gives one)."""
    if password:
        return user, password
    name, sep, pw = user.partition(":")
    if sep:
        return name, pw
    try:
        return user, getpass.getpass("Password: ")
    except (EOFError, OSError) as exc:
        raise CtlExit(EXIT_ERROR, str(exc)) from None


def host_port(endpoint: str) -> str:
    for scheme in ("http://", "https://", "unix://", "unixs://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme):].rstrip("/")
    return endpoint


def go_error(code: grpc.StatusCode, details: str) -> str:
    return f"rpc error: code = {_GO_CODES.get(code, 'Unknown')} desc = {details}"


def _dial_error(endpoint: str) -> str:
    """grpc-go's description of why a connection to endpoint cannot be made (for the log line)."""
    hp = host_port(endpoint)
    host, _, port = hp.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
            return ""
    except ValueError:
        return f'transport: Error while dialing dial tcp: address {hp}: missing port in address'
    except OSError as exc:
        reason = {errno.ECONNREFUSED: "connect: connection refused",
                  errno.EHOSTUNREACH: "connect: no route to host",
                  errno.ENETUNREACH: "connect: network is unreachable"}.get(exc.errno or 0, "i/o timeout")
        return f"transport: Error while dialing dial tcp {hp}: {reason}"


class Client:
    def __init__(self, cfg: ClientConfig, *, log: bool = True, logger: str = "etcd-client") -> None:
        if not cfg.endpoints:
            raise CtlExit(EXIT_ERROR, "no endpoints given")
        self.cfg = cfg
        self.log = log
        self.logger = logger
        self._channels: dict[str, grpc.Channel] = {}
        self.token = ""
        if cfg.user:
            name, password = split_user(cfg.user, cfg.password)
            try:
                resp = self.unary("Auth", "Authenticate", pb.AuthenticateRequest(name=name, password=password))
            except RpcFailure as exc:
                raise CtlExit(EXIT_BAD_CONNECTION, str(exc)) from None
            self.token = resp.token

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self.cfg.endpoints

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- channels ----------------------------------------------------------------------------------
    def _credentials(self, endpoint: str) -> grpc.ChannelCredentials | None:
        t = self.cfg.tls
        if not (t.cacert or t.cert or t.key or endpoint.startswith("https://") or not t.insecure_transport):
            return None
        try:
            root = open(t.cacert, "rb").read() if t.cacert else None
            cert = open(t.cert, "rb").read() if t.cert else None
            key = open(t.key, "rb").read() if t.key else None
        except OSError as exc:
            raise CtlExit(EXIT_BAD_ARGS, f"open {exc.filename}: {exc.strerror.lower() if exc.strerror else exc}") from None
        if t.skip_verify and root is None:
            # gRPC Python cannot switch verification off: trust the certificate the server presents.
            root = _server_cert_pem(host_port(endpoint), t.cert, t.key).encode()
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)

    def _channel_args(self, endpoint: str) -> tuple[str, grpc.ChannelCredentials | None, list[tuple[str, str | int]]]:
        target = host_port(endpoint)
        creds = self._credentials(endpoint)
        opts: list[tuple[str, str | int]] = [("grpc.max_receive_message_length", 2**31 - 1),
                                             ("grpc.enable_http_proxy", 0),
                                             ("grpc.keepalive_time_ms", int(self.cfg.keepalive_time * 1000)),
                                             ("grpc.keepalive_timeout_ms", int(self.cfg.keepalive_timeout * 1000)),
                                             ("grpc.keepalive_permit_without_calls", 1)]
        if creds is not None and self.cfg.tls.skip_verify:
            tc = self.cfg.tls
            opts.append(("grpc.ssl_target_name_override", _cert_name(_server_cert_pem(target, tc.cert, tc.key))))
        return target, creds, opts

    def channel(self, endpoint: str) -> grpc.Channel:
        ch = self._channels.get(endpoint)
        if ch is None:
            target, creds, opts = self._channel_args(endpoint)
            ch = grpc.secure_channel(target, creds, opts) if creds else grpc.insecure_channel(target, opts)
            self._channels[endpoint] = ch
        return ch

    def aio_channel(self, endpoint: str) -> grpc.aio.Channel:
        """An asyncio channel of its own (its own connection, as each of etcdctl's clients has),
        with this client's credentials and options; the caller closes it."""
        target, creds, opts = self._channel_args(endpoint)
        opts.append(("grpc.use_local_subchannel_pool", 1))
        return grpc.aio.secure_channel(target, creds, opts) if creds else grpc.aio.insecure_channel(target, opts)

    def metadata(self) -> list[tuple[str, str]]:
        """What every call carries: the auth token, once authenticated."""
        return self._metadata()

    def failure(self, exc: grpc.RpcError, endpoint: str) -> RpcFailure:
        """A failed call as etcd's client reports it (and logs it on stderr)."""
        return self._failure(exc, endpoint)

    def pick(self) -> str:
        """The first endpoint that accepts a connection within the dial timeout (etcd's balancer
        moves on from endpoints it cannot reach); the first one when none does."""
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        for ep in self.endpoints:
            try:
                grpc.channel_ready_future(self.channel(ep)).result(timeout=self.cfg.dial_timeout / len(self.endpoints))
                return ep
            except grpc.FutureTimeoutError:
                continue
        return self.endpoints[0]

    def _metadata(self) -> list[tuple[str, str]]:
        return [("token", self.token)] if self.token else []

    def stub(self, service: str, endpoint: str | None = None) -> Any:
        return getattr(rpc, f"{service}Stub")(self.channel(endpoint or self.pick()))

    # --- calls -------------------------------------------------------------------------------------
    def unary(self, service: str, method: str, request: Any, *, endpoint: str | None = None,
              timeout: float | None = None) -> Any:
        ep = endpoint or self.pick()
        fn = getattr(self.stub(service, ep), method)
        deadline = self.cfg.command_timeout if timeout is None else timeout
        try:
            return fn(request, timeout=deadline, metadata=self._metadata(), wait_for_ready=True)
        except grpc.RpcError as exc:
            raise self._failure(exc, ep) from None

    def _failure(self, exc: grpc.RpcError, endpoint: str) -> RpcFailure:
        code = exc.code()
        details = exc.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            why = _dial_error(endpoint)
            details = f"latest balancer error: last connection error: connection error: desc = {json.dumps(why)}" \
                if why else DEADLINE
            self.warn(go_error(code, details), endpoint)
            return RpcFailure(DEADLINE, code, details)
        self.warn(go_error(code, details), endpoint)
        if details.startswith("etcdserver: ") or code == grpc.StatusCode.CANCELLED:
            return RpcFailure(details if code != grpc.StatusCode.CANCELLED else "context canceled", code, details)
        return RpcFailure(go_error(code, details), code, details)

    def warn(self, error: str, endpoint: str) -> None:
        """etcd's client logs every failed unary call as one JSON line on stderr."""
        if not self.log:
            return
        now = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        line = {"level": "warn", "ts": ts, "logger": self.logger, "caller": "v3/retry_interceptor.go:62",
                "msg": "retrying of unary invoker failed",
                "target": f"etcd-endpoints://0xc000{id(self) & 0xFFFFFF:06x}/{host_port(self.endpoints[0])}",
                "attempt": 0, "error": error}
        sys.stderr.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
        sys.stderr.flush()

    def stream(self, service: str, method: str, requests: Any, *, endpoint: str | None = None,
               timeout: float | None = None, metadata: tuple[tuple[str, str], ...] = ()) -> Iterator[Any]:
        ep = endpoint or self.pick()
        fn = getattr(self.stub(service, ep), method)
        try:
            yield from fn(requests, timeout=timeout, metadata=[*self._metadata(), *metadata], wait_for_ready=True)
        except grpc.RpcError as exc:
            code = exc.code()
            details = exc.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise RpcFailure(DEADLINE, code, details) from None
            text = details if details.startswith("etcdserver: ") else go_error(code, details)
            raise RpcFailure(text, code, details) from None

    # --- helpers used by several commands ----------------------------------------------------------
    def member_list(self, linearizable: bool = True) -> Any:
        return self.unary("Cluster", "MemberList", pb.MemberListRequest(linearizable=linearizable))

    def status(self, endpoint: str, timeout: float | None = None) -> Any:
        return self.unary("Maintenance", "Status", pb.StatusRequest(), endpoint=endpoint, timeout=timeout)


def _server_cert_pem(target: str, cert: str, key: str) -> str:
    """The certificate the server presents, fetched without verifying it (for skip-verify)."""
    host, _, port = target.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if cert and key:
        ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock, \
                ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError) as exc:
        raise CtlExit(EXIT_BAD_CONNECTION, f"cannot fetch the certificate of {target}: {exc}") from None
    if der is None:
        raise CtlExit(EXIT_BAD_CONNECTION, f"{target} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)


def _cert_name(pem: str) -> str:
    """A name the server's certificate is valid for, to verify it against itself (skip-verify)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        if names:
            return str(names[0])
        ips = san.get_values_for_type(x509.IPAddress)
        if ips:
            return str(ips[0])
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else "localhost"
