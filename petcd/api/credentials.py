"""Whose call this is: the one place the API layer turns a call's context into credentials.

:class:`Credentials` takes the token from the gRPC metadata (key ``token``, or the gateway's
``authorization``) and, when there is none, asks its ``common_name`` provider for the verified
client certificate's common name (``--client-cert-auth``). The provider is a parameter so TLS can
plug in with one call: ``Credentials(server, common_name=client_common_name)``; without it no
certificate is looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from petcd.auth import AuthInfo
from petcd.server import authserver
from petcd.server.etcdserver import EtcdServer

# a call's context -> the common name of its verified client certificate, or None
CommonName = Callable[[Any], str | None]


def no_common_name(context: Any) -> str | None:
    return None


class Credentials:
    """Resolves a call's credentials for the member's checks; see the module docstring."""

    def __init__(self, server: EtcdServer, common_name: CommonName = no_common_name) -> None:
        self.server = server
        self.common_name = common_name

    async def enter(self, context: Any) -> AuthInfo | None:
        """The call's credentials (InvalidAuthTokenError for a bad token), also made the caller of
        everything the rest of this call proposes or reads."""
        md = context.invocation_metadata() or ()
        info = await authserver.credentials(self.server, md, self._cn(context))
        authserver.run_as(info)
        return info

    def now(self, context: Any) -> AuthInfo | None:
        """The same without waiting for a simple token's entry to be applied (for checks that
        cannot wait, as the Watch stream's per-create check)."""
        md = context.invocation_metadata() or ()
        return authserver.credentials_now(self.server, md, self._cn(context))

    async def admin(self, context: Any) -> AuthInfo | None:
        """:meth:`enter`, then the root role (etcd's admin-only Maintenance and Cluster calls)."""
        info = await self.enter(context)
        authserver.check_admin(self.server, info)
        return info

    def _cn(self, context: Any) -> str | None:
        if not self.server.auth_store.enabled:
            return None
        return self.common_name(context)
