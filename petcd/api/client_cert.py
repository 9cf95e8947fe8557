"""The verified common name of the client certificate behind a call (etcd makes it the auth
user when --client-cert-auth is on and a request carries no token).

Two ways a call reaches a servicer:

- on a TLS connection to the member's own gRPC server: gRPC's auth context has the CN of the
  certificate it verified;
- relayed by a client front-end process (over its link, as a ``ForwardedContext``, or over the
  member's private socket, which uses gRPC's local credentials): the front-end verified the
  certificate and forwards the CN in the metadata key ``CN_METADATA_KEY``, after dropping any
  value the client itself sent under that key. Only those two private paths, which report the
  security type "local", are believed; the key is ignored on every other connection, so a
  client cannot name itself.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CN_METADATA_KEY", "client_common_name", "strip_reserved"]

# -bin: the value travels as bytes, so any UTF-8 name survives gRPC's metadata rules
CN_METADATA_KEY = "petcd-verified-client-cn-bin"


class CallContext(Protocol):
    def auth_context(self) -> Any: ...

    def invocation_metadata(self) -> Any: ...


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def client_common_name(context: CallContext) -> str | None:
    """The CN of the call's verified client certificate, or None if there is none."""
    auth = context.auth_context() or {}
    kind = auth.get("transport_security_type") or []
    if b"ssl" in kind:
        names = auth.get("x509_common_name") or []
        return _text(names[0]) if names and names[0] else None
    if b"local" in kind:
        for entry in context.invocation_metadata() or ():
            key, value = entry[0], entry[1]
            if key == CN_METADATA_KEY:
                return _text(value) or None
    return None


def strip_reserved(metadata: tuple[tuple[str, str | bytes], ...]) -> tuple[tuple[str, str | bytes], ...]:
    """``metadata`` without the reserved CN key (a front-end applies this to what clients send)."""
    return tuple(m for m in metadata if m[0] != CN_METADATA_KEY)
