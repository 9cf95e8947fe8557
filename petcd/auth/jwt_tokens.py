"""JWT auth tokens (``--auth-token jwt,...``): see petcd.auth.tokens.

Its own module because PyJWT and cryptography are slow to import: a member imports it only when
its --auth-token names jwt (while it builds its token provider, at start-up, so a bad key file
still stops the member before it serves).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import HMACAlgorithm

from petcd.auth.tokens import DEFAULT_JWT_TTL, INVALID_AUTH_OPTS, JWT_SIGN_METHODS, AuthInfo, parse_duration
from petcd.clock import Clock
from petcd.errors import InvalidAuthOptsError, TokenSignError

log = logging.getLogger("petcd.auth")


class _AnyHMACKey(HMACAlgorithm):
    """HMAC that takes any file as its secret: etcd does (a PEM file too), PyJWT refuses those."""

    def prepare_key(self, key: str | bytes) -> bytes:
        return key if isinstance(key, bytes) else key.encode()


def _new_jws() -> jwt.PyJWS:
    jws = jwt.PyJWS()
    for name, digest in (("HS256", HMACAlgorithm.SHA256), ("HS384", HMACAlgorithm.SHA384),
                         ("HS512", HMACAlgorithm.SHA512)):
        jws.unregister_algorithm(name)
        jws.register_algorithm(name, _AnyHMACKey(digest))
    return jws


_JWS = _new_jws()

SigningKey = bytes | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
VerifyingKey = bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class JWTTokenProvider:
    """etcd's JWT tokens. ``signing_key`` is None with only a public key: such a member verifies
    tokens but cannot issue them (etcd's verify-only mode: Authenticate fails)."""

    kind = "jwt"

    def __init__(
        self,
        sign_method: str,
        signing_key: SigningKey | None,
        verifying_key: VerifyingKey,
        clock: Clock,
        ttl: float = DEFAULT_JWT_TTL,
    ) -> None:
        if sign_method not in JWT_SIGN_METHODS:
            raise InvalidAuthOptsError("auth: invalid auth signature method")
        self.sign_method = sign_method
        self._signing_key = signing_key
        self._verifying_key = verifying_key
        self._clock = clock
        self.ttl = ttl

    @property
    def verify_only(self) -> bool:
        return self._signing_key is None

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def invalidate_user(self, username: str) -> None:
        pass  # a JWT cannot be withdrawn; the revision bump makes it old

    def gen_token_prefix(self) -> str:
        return ""

    def wait_index(self, token: str) -> int:
        return 0

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        if self._signing_key is None:
            raise TokenSignError("auth: token signing attempted with verify-only key")
        # Go's exp is whole seconds: time.Now().Add(ttl).Unix()
        exp = int(self._clock.wall() + self.ttl)
        # claims in name order, as Go marshals a map
        claims = json.dumps({"exp": exp, "revision": revision, "username": username},
                            separators=(",", ":")).encode()
        try:
            return _JWS.encode(claims, self._signing_key, algorithm=self.sign_method)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise TokenSignError(f"failed to sign a JWT token: {exc}") from exc

    def info(self, token: str, revision: int) -> AuthInfo | None:
        try:
            payload = _JWS.decode(token, self._verifying_key, algorithms=[self.sign_method])
            claims: Any = json.loads(payload)
        except (jwt.PyJWTError, ValueError) as exc:
            log.warning("failed to parse a JWT token: %s", exc)
            return None
        if not isinstance(claims, dict):
            return None
        # the time claims are checked here, against the injected clock, as jwt-go does (whole
        # seconds, valid through the second of exp)
        now = int(self._clock.wall())
        for name, sign in (("exp", 1), ("nbf", -1), ("iat", -1)):
            if name in claims:
                value = claims[name]
                # exp: valid while now <= exp; nbf, iat: valid once now >= them
                if not isinstance(value, int | float) or isinstance(value, bool) or sign * (value - now) < 0:
                    return None
        username = claims.get("username")
        rev = claims.get("revision")
        if not isinstance(username, str) or not isinstance(rev, int | float) or isinstance(rev, bool):
            return None
        return AuthInfo(username, int(rev))




def _rsa_or_ec_keys(method: str, priv_pem: bytes, pub_pem: bytes) -> tuple[SigningKey | None, VerifyingKey]:
    want_rsa = method[:2] in ("RS", "PS")
    kind = "RSA" if want_rsa else "ECDSA"
    priv: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
    pub: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None
    if priv_pem:
        try:
            loaded = serialization.load_pem_private_key(priv_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidAuthOptsError(f"Key is not a valid {kind} private key") from exc
        if want_rsa and isinstance(loaded, rsa.RSAPrivateKey):
            priv = loaded
        elif not want_rsa and isinstance(loaded, ec.EllipticCurvePrivateKey):
            priv = loaded
        else:
            raise InvalidAuthOptsError(f"Key is not a valid {kind} private key")
    if pub_pem:
        try:
            loaded_pub = serialization.load_pem_public_key(pub_pem)
        except (ValueError, TypeError) as exc:
            raise InvalidAuthOptsError(f"Key is not a valid {kind} public key") from exc
        if want_rsa and isinstance(loaded_pub, rsa.RSAPublicKey):
            pub = loaded_pub
        elif not want_rsa and isinstance(loaded_pub, ec.EllipticCurvePublicKey):
            pub = loaded_pub
        else:
            raise InvalidAuthOptsError(f"Key is not a valid {kind} public key")
    if priv is None:
        if pub is None:
            raise InvalidAuthOptsError("auth: missing key data")
        return None, pub
    derived = priv.public_key()
    if pub is not None and pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != derived.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise InvalidAuthOptsError("auth: public and private keys don't match")
    return priv, derived


def _load_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        log.error("problem loading JWT options: %s", exc)
        raise InvalidAuthOptsError(INVALID_AUTH_OPTS) from exc


def new_jwt_provider(options: dict[str, str], clock: Clock,
                     read_file: Callable[[str], bytes] = _load_key) -> JWTTokenProvider:
    """A JWT provider from ``--auth-token jwt,...`` options (etcd's newTokenProviderJWT)."""
    ttl = DEFAULT_JWT_TTL
    if options.get("ttl", ""):
        try:
            ttl = parse_duration(options["ttl"])
        except ValueError as exc:
            log.error("problem loading JWT options: %s", exc)
            raise InvalidAuthOptsError(INVALID_AUTH_OPTS) from exc
    pub_pem = read_file(options["pub-key"]) if options.get("pub-key", "") else b""
    priv_pem = read_file(options["priv-key"]) if options.get("priv-key", "") else b""
    method = options.get("sign-method", "")
    if method not in JWT_SIGN_METHODS:
        log.error("problem loading JWT options: auth: invalid auth signature method")
        raise InvalidAuthOptsError(INVALID_AUTH_OPTS)
    unknown = sorted(set(options) - {"ttl", "pub-key", "priv-key", "sign-method"})
    if unknown:
        log.warning("unknown JWT options: %s", unknown)
    if method.startswith("HS"):
        if not priv_pem:
            raise InvalidAuthOptsError("auth: missing key data")
        return JWTTokenProvider(method, priv_pem, priv_pem, clock, ttl)
    signing, verifying = _rsa_or_ec_keys(method, priv_pem, pub_pem)
    return JWTTokenProvider(method, signing, verifying, clock, ttl)
