"""Auth tokens: etcd's ``simple`` and ``jwt`` providers, and the ``--auth-token`` option parser.

A token is issued when an Authenticate entry is applied (``assign``) and turned back into an
:class:`AuthInfo` on every later request (``info``).

* ``simple``: ``<16 random letters>.<raft index of the Authenticate entry>``. The letters are
  chosen by the member that takes the request, before the proposal, and travel in the entry, so
  every member that applies it knows the same token. Tokens live in memory only: a restart, an
  ``auth disable``, a password change or the user's deletion ends them, and one unused for the TTL
  (``--auth-token-ttl``, 300 s) expires; each use restarts its TTL. The index tells a member that
  has not applied the entry yet to wait for it (``wait_index``). ``info`` answers with the store's
  current auth revision, as etcd's does.
* ``jwt``: a signed JWT with claims ``username``, ``revision`` (the auth revision when issued) and
  ``exp``; any member holding the key verifies it, nothing is kept. Its revision is what permission
  checks compare against the store's: once users or roles change, older tokens get
  AuthOldRevisionError (the client authenticates again).

Time comes from an injected :class:`petcd.clock.Clock` (``now`` for simple-token TTLs, ``wall``
for JWT expiry), randomness from an injected ``random.Random`` (``random.SystemRandom`` in
production: simple tokens are bearer secrets).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from petcd.clock import Clock
from petcd.errors import AuthFailedError, InvalidAuthOptsError

if TYPE_CHECKING:
    from petcd.auth.jwt_tokens import JWTTokenProvider

log = logging.getLogger("petcd.auth")

SIMPLE_TOKEN_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SIMPLE_TOKEN_PREFIX_LENGTH = 16
DEFAULT_SIMPLE_TOKEN_TTL = 300.0  # seconds (--auth-token-ttl)
DEFAULT_JWT_TTL = 300.0  # seconds (jwt's ttl= option)

_SIMPLE_TOKEN = re.compile(r"([^.]*)\.([0-9]+)")
_MAX_UINT64 = 2**64 - 1


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a request runs as: a user name and the auth revision its credentials were checked at."""

    username: str
    revision: int


class TokenProvider(Protocol):
    """What the auth store needs from a token kind (etcd's TokenProvider)."""

    def enable(self) -> None: ...

    def disable(self) -> None: ...

    def invalidate_user(self, username: str) -> None: ...

    def gen_token_prefix(self) -> str:
        """The random part of a simple token, chosen before the proposal ("" for other kinds)."""
        ...

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        """Issue a token (applying an Authenticate entry at raft ``index``)."""
        ...

    def info(self, token: str, revision: int) -> AuthInfo | None:
        """Who ``token`` belongs to, or None if it is not valid; ``revision`` is the store's."""
        ...

    def wait_index(self, token: str) -> int:
        """The raft index a member must have applied before ``info`` can know ``token``."""
        ...


# -- simple -----------------------------------------------------------------------------------
def simple_token_index(token: str) -> int | None:
    """The raft index in a simple token, or None if it does not have a simple token's shape."""
    m = _SIMPLE_TOKEN.fullmatch(token)
    if m is None:
        return None
    index = int(m.group(2))
    return index if index <= _MAX_UINT64 else None


class SimpleTokenProvider:
    """etcd's simple tokens; see the module docstring."""

    kind = "simple"

    def __init__(self, clock: Clock, rng: random.Random, ttl: float = DEFAULT_SIMPLE_TOKEN_TTL) -> None:
        self._clock = clock
        self._rng = rng
        self.ttl = ttl if ttl > 0 else DEFAULT_SIMPLE_TOKEN_TTL
        self._enabled = False
        self._users: dict[str, str] = {}  # token -> user name
        self._expiry: dict[str, float] = {}  # token -> clock time it expires at

    def __len__(self) -> int:
        return len(self._users)

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._users.clear()
        self._expiry.clear()

    def invalidate_user(self, username: str) -> None:
        for token in [t for t, name in self._users.items() if name == username]:
            self._drop(token)

    def gen_token_prefix(self) -> str:
        return "".join(self._rng.choice(SIMPLE_TOKEN_LETTERS) for _ in range(SIMPLE_TOKEN_PREFIX_LENGTH))

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        if not self._enabled:
            # etcd hands out the token but does not record it: it is never valid
            return token
        self.expire()
        if token in self._users:
            # two Authenticate entries cannot share an index (etcd panics); the later one wins
            log.error("simple token of raft index %d assigned twice", index)
        self._users[token] = username
        self._expiry[token] = self._clock.now() + self.ttl
        return token

    def info(self, token: str, revision: int) -> AuthInfo | None:
        if simple_token_index(token) is None:
            return None
        username = self._users.get(token)
        if username is None:
            return None
        now = self._clock.now()
        if now > self._expiry[token]:
            self._drop(token)
            return None
        self._expiry[token] = now + self.ttl
        return AuthInfo(username, revision)

    def wait_index(self, token: str) -> int:
        return simple_token_index(token) or 0

    def expire(self) -> int:
        """Forget every token past its TTL; how many. (``info`` also checks, so this only bounds
        memory; it runs on each ``assign`` and may be called on a timer.)"""
        now = self._clock.now()
        dead = [t for t, at in self._expiry.items() if now > at]
        for token in dead:
            self._drop(token)
        return len(dead)

    def _drop(self, token: str) -> None:
        self._users.pop(token, None)
        self._expiry.pop(token, None)


# -- jwt: petcd.auth.jwt_tokens, imported only for --auth-token=jwt,... (PyJWT and cryptography
# take ~50 ms to import, on every start otherwise) ----------------------------------------------
JWT_SIGN_METHODS = (
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
)


# -- none ('--auth-token ""') -------------------------------------------------------------------
class NopTokenProvider:
    """etcd's provider for an empty --auth-token: issues nothing, accepts nothing."""

    kind = ""

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def invalidate_user(self, username: str) -> None:
        pass

    def gen_token_prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        raise AuthFailedError()

    def info(self, token: str, revision: int) -> AuthInfo | None:
        return None

    def wait_index(self, token: str) -> int:
        return 0


# -- --auth-token ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TokenOptions:
    """``--auth-token`` decomposed: the kind and its ``key=value`` options."""

    kind: str
    options: dict[str, str]


INVALID_AUTH_OPTS = "auth: invalid auth options"


def parse_token_options(opt: str) -> TokenOptions:
    """etcd's decomposition of ``--auth-token``: ``kind[,key=value...]``; a pair that is not
    exactly ``key=value`` or a repeated key is InvalidAuthOptsError."""
    parts = opt.split(",")
    options: dict[str, str] = {}
    for item in parts[1:]:
        pair = item.split("=")
        if len(pair) != 2 or pair[0] in options:
            raise InvalidAuthOptsError(INVALID_AUTH_OPTS)
        options[pair[0]] = pair[1]
    return TokenOptions(parts[0], options)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds (ValueError if it is not one)."""
    s = text
    sign = -1.0 if s.startswith("-") else 1.0
    if s and s[0] in "+-":
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        assert m is not None  # the pattern matches the empty string
        number, unit = m.group(1), m.group(2)
        if number in ("", ".") or unit not in _DURATION_UNITS:
            raise ValueError(f"invalid duration {text!r}")
        total += float(number) * _DURATION_UNITS[unit]
        pos = m.end()
    return sign * total


def new_token_provider(
    opt: str, clock: Clock, rng: random.Random, simple_ttl: float = DEFAULT_SIMPLE_TOKEN_TTL
) -> SimpleTokenProvider | JWTTokenProvider | NopTokenProvider:
    """The provider ``--auth-token`` names (etcd's NewTokenProvider): ``simple`` (other options
    ignored), ``jwt,...``, or ``""`` (no tokens). Anything else is InvalidAuthOptsError; the
    message is the error etcd fails to start with."""
    parsed = parse_token_options(opt)
    if parsed.kind == "simple":
        log.warning("simple token is not cryptographically signed")
        return SimpleTokenProvider(clock, rng, simple_ttl)
    if parsed.kind == "jwt":
        from petcd.auth.jwt_tokens import new_jwt_provider  # lazy: see JWT_SIGN_METHODS

        return new_jwt_provider(parsed.options, clock)
    if parsed.kind == "":
        return NopTokenProvider()
    log.warning("unknown token type %r", parsed.kind)
    raise InvalidAuthOptsError(INVALID_AUTH_OPTS)
