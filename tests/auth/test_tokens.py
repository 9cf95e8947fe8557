"""Simple and JWT tokens, and the --auth-token option parser (etcd 3.5.1's rules)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from petcd import errors as e
from petcd.auth import AuthInfo, AuthStore, NopTokenProvider, SimpleTokenProvider
from petcd.auth.jwt_tokens import JWTTokenProvider
from petcd.auth.tokens import new_token_provider, parse_duration, parse_token_options, simple_token_index
from petcd.backend import Backend
from petcd.clock import ManualClock
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from tests.auth.conftest import COST
from tests.auth.helpers import add_role, add_user, enable, login, setup_root


# -- simple ----------------------------------------------------------------------------------------
def test_simple_token_shape_and_index(clock: ManualClock) -> None:
    p = SimpleTokenProvider(clock, random.Random(3))
    p.enable()
    prefix = p.gen_token_prefix()
    assert re.fullmatch(r"[a-zA-Z]{16}", prefix)
    assert p.gen_token_prefix() != prefix
    token = p.assign("alice", 4, prefix, 42)
    assert token == f"{prefix}.42" and p.wait_index(token) == 42
    assert p.info(token, 9) == AuthInfo("alice", 9)  # the store's revision, as etcd's
    assert simple_token_index("abc") is None
    assert simple_token_index("a.b.1") is None
    assert simple_token_index("a.+1") is None
    assert simple_token_index(f"a.{2**64}") is None
    assert p.info("abc", 1) is None and p.info(f"{prefix}.43", 1) is None


def test_simple_token_ttl_refreshed_on_use(clock: ManualClock) -> None:
    p = SimpleTokenProvider(clock, random.Random(3), ttl=10)
    p.enable()
    t = p.assign("alice", 1, "x" * 16, 1)
    clock.advance(9)
    assert p.info(t, 1) is not None  # used: ten more seconds
    clock.advance(9)
    assert p.info(t, 1) is not None
    clock.advance(10.5)
    assert p.info(t, 1) is None
    assert len(p) == 0


def test_simple_token_expiry_sweep_and_default_ttl(clock: ManualClock) -> None:
    p = SimpleTokenProvider(clock, random.Random(3), ttl=0)
    assert p.ttl == 300
    p.enable()
    p.assign("a", 1, "p" * 16, 1)
    clock.advance(200)
    p.assign("b", 1, "q" * 16, 2)
    clock.advance(150)
    assert p.expire() == 1 and len(p) == 1


def test_disabled_simple_provider_records_nothing(clock: ManualClock) -> None:
    p = SimpleTokenProvider(clock, random.Random(3))
    t = p.assign("a", 1, "p" * 16, 1)
    assert p.info(t, 1) is None


# -- jwt ---------------------------------------------------------------------------------------------
def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)


_RSA = rsa.generate_private_key(65537, 2048)
_EC = {"ES256": ec.generate_private_key(ec.SECP256R1()), "ES384": ec.generate_private_key(ec.SECP384R1()),
       "ES512": ec.generate_private_key(ec.SECP521R1())}


def _keys_for(method: str, tmp_path: Path) -> str:
    """--auth-token options naming key files for method."""
    if method.startswith("HS"):
        (tmp_path / "secret").write_bytes(b"a shared secret long enough for HS512: " + b"x" * 40)
        return f"priv-key={tmp_path / 'secret'}"
    key = _RSA if method[:2] in ("RS", "PS") else _EC[method]
    (tmp_path / f"{method}.key").write_bytes(_pem_private(key))
    (tmp_path / f"{method}.pub").write_bytes(_pem_public(key))
    return f"priv-key={tmp_path / f'{method}.key'},pub-key={tmp_path / f'{method}.pub'}"


ALL_METHODS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
               "ES256", "ES384", "ES512"]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_jwt_round_trip_every_method(method: str, tmp_path: Path, clock: ManualClock) -> None:
    p = new_token_provider(f"jwt,sign-method={method},{_keys_for(method, tmp_path)},ttl=5m", clock,
                           random.Random(1))
    assert isinstance(p, JWTTokenProvider) and p.ttl == 300
    token = p.assign("alice", 7, "", 99)
    assert jwt.get_unverified_header(token)["alg"] == method
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {"username": "alice", "revision": 7, "exp": int(clock.wall()) + 300}
    assert p.info(token, 123) == AuthInfo("alice", 7)  # the token's revision, not the store's
    assert p.wait_index(token) == 0


def test_jwt_expiry_on_the_injected_clock(tmp_path: Path, clock: ManualClock) -> None:
    p = new_token_provider(f"jwt,sign-method=HS256,{_keys_for('HS256', tmp_path)},ttl=10s", clock,
                           random.Random(1))
    token = p.assign("a", 1, "", 1)
    clock.advance(10)
    assert p.info(token, 1) is not None  # valid through the second of exp
    clock.advance(1)
    assert p.info(token, 1) is None


def test_jwt_refuses_tampered_and_foreign_tokens(tmp_path: Path, clock: ManualClock) -> None:
    p = new_token_provider(f"jwt,sign-method=RS256,{_keys_for('RS256', tmp_path)}", clock, random.Random(1))
    token = p.assign("alice", 1, "", 1)
    head, body, sig = token.split(".")
    forged = jwt.encode({"username": "root", "revision": 1, "exp": int(clock.wall()) + 60}, "k" * 64,
                        algorithm="HS256")
    assert p.info(f"{head}.{body}.{sig[:-4]}AAAA", 1) is None
    assert p.info(forged, 1) is None  # another algorithm
    assert p.info("garbage", 1) is None
    other = rsa.generate_private_key(65537, 2048)
    assert p.info(jwt.encode({"username": "root", "revision": 1}, other, algorithm="RS256"), 1) is None
    no_user = jwt.encode({"revision": 1}, _RSA, algorithm="RS256")
    assert p.info(no_user, 1) is None


def test_jwt_verify_only_member(tmp_path: Path, clock: ManualClock) -> None:
    (tmp_path / "k.pub").write_bytes(_pem_public(_RSA))
    verifier = new_token_provider(f"jwt,sign-method=RS256,pub-key={tmp_path / 'k.pub'}", clock,
                                  random.Random(1))
    assert isinstance(verifier, JWTTokenProvider) and verifier.verify_only
    with pytest.raises(e.TokenSignError):
        verifier.assign("a", 1, "", 1)
    # what etcd 3.5.1 answers then (observed with etcdctl against a pub-key-only member)
    from petcd.api.errors import status_of
    assert status_of(e.TokenSignError()) == (grpc.StatusCode.UNKNOWN,
                                              "auth: token signing attempted with verify-only key")
    signer = new_token_provider(f"jwt,sign-method=RS256,{_keys_for('RS256', tmp_path)}", clock, random.Random(1))
    assert verifier.info(signer.assign("a", 3, "", 1), 1) == AuthInfo("a", 3)


def test_jwt_token_from_another_member_works_in_its_store(tmp_path: Path, clock: ManualClock) -> None:
    """Any member holding the key accepts a JWT, and permission checks compare its revision."""
    opt = f"jwt,sign-method=ES256,{_keys_for('ES256', tmp_path)}"
    stores = []
    for i in range(2):
        be = Backend(tmp_path / f"db{i}", map_size=16 << 20)
        s = AuthStore(be, new_token_provider(opt, clock, random.Random(i)), bcrypt_cost=COST)
        setup_root(s)
        add_user(s, "alice", "pw")
        enable(s)
        stores.append((be, s))
    try:
        (_, a), (_, b) = stores
        token, _ = login(a, "alice", "pw")
        info = b.auth_info_from_token(token)
        assert info == AuthInfo("alice", b.revision)
        b.is_admin_permitted(b.auth_info_from_token(login(a, "root", "rootpw")[0]))
        add_role(b, "r")  # b's revision moves on: the token is now old there
        with pytest.raises(e.AuthOldRevisionError):
            b.is_range_permitted(b.auth_info_from_token(token), b"k")
    finally:
        for be, _ in stores:
            be.close()


# -- --auth-token -----------------------------------------------------------------------------------
def test_parse_token_options() -> None:
    assert parse_token_options("simple").kind == "simple"
    o = parse_token_options("jwt,sign-method=RS256,ttl=1h")
    assert o.kind == "jwt" and o.options == {"sign-method": "RS256", "ttl": "1h"}
    for bad in ("jwt,sign-method", "jwt,a=b=c", "jwt,ttl=1s,ttl=2s", "jwt,"):
        with pytest.raises(e.InvalidAuthOptsError):
            parse_token_options(bad)


def test_provider_kinds(clock: ManualClock) -> None:
    assert isinstance(new_token_provider("simple,whatever=1", clock, random.Random(1)), SimpleTokenProvider)
    nop = new_token_provider("", clock, random.Random(1))
    assert isinstance(nop, NopTokenProvider)
    with pytest.raises(e.AuthFailedError):
        nop.assign("a", 1, "", 1)
    with pytest.raises(e.InvalidAuthOptsError, match="auth: invalid auth options"):
        new_token_provider("foo", clock, random.Random(1))


Opt = Callable[[Path], str]


@pytest.mark.parametrize(("make", "message"), [
    # what etcd 3.5.1 fails to start with (observed with the real binary)
    (lambda d: "jwt", "auth: invalid auth options"),
    (lambda d: f"jwt,sign-method=EdDSA,priv-key={d / 'ed.key'}", "auth: invalid auth options"),
    (lambda d: f"jwt,sign-method=none,priv-key={d / 'RS256.key'}", "auth: invalid auth options"),
    (lambda d: f"jwt,sign-method=HS256,priv-key={d / 'secret'},ttl=5x", "auth: invalid auth options"),
    (lambda d: f"jwt,sign-method=RS256,priv-key={d / 'missing'}", "auth: invalid auth options"),
    (lambda d: "jwt,sign-method=HS256", "auth: missing key data"),
    (lambda d: "jwt,sign-method=RS256", "auth: missing key data"),
    (lambda d: f"jwt,sign-method=RS256,priv-key={d / 'ed.key'}", "Key is not a valid RSA private key"),
    (lambda d: f"jwt,sign-method=ES256,priv-key={d / 'RS256.key'}", "Key is not a valid ECDSA private key"),
    (lambda d: f"jwt,sign-method=RS256,priv-key={d / 'RS256.key'},pub-key={d / 'other.pub'}",
     "auth: public and private keys don't match"),
])
def test_jwt_option_errors(make: Opt, message: str, tmp_path: Path, clock: ManualClock) -> None:
    _keys_for("RS256", tmp_path)
    _keys_for("HS256", tmp_path)
    ed = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "ed.key").write_bytes(ed.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                                       ser.NoEncryption()))
    (tmp_path / "other.pub").write_bytes(_pem_public(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(e.InvalidAuthOptsError) as info:
        new_token_provider(make(tmp_path), clock, random.Random(1))
    assert str(info.value) == message


def test_unknown_jwt_option_is_only_a_warning(tmp_path: Path, clock: ManualClock,
                                              caplog: pytest.LogCaptureFixture) -> None:
    p = new_token_provider(f"jwt,sign-method=HS256,{_keys_for('HS256', tmp_path)},bogus=1", clock,
                           random.Random(1))
    assert isinstance(p, JWTTokenProvider) and "unknown JWT options" in caplog.text


def test_go_durations() -> None:
    assert parse_duration("5m") == 300 and parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5 and parse_duration("0") == 0
    assert parse_duration("-2s") == -2 and parse_duration("300ms") == pytest.approx(0.3)
    for bad in ("", "5", "5x", ".s", "s", "1h-5m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_store_with_jwt_status(tmp_path: Path, clock: ManualClock, backend: Backend) -> None:
    p = new_token_provider(f"jwt,sign-method=HS512,{_keys_for('HS512', tmp_path)}", clock, random.Random(1))
    s = AuthStore(backend, p, bcrypt_cost=COST)
    assert s.gen_token_prefix() == ""
    setup_root(s)
    enable(s)
    token, info = login(s, "root", "rootpw")
    assert s.token_wait_index(token) == 0 and info.revision == s.revision
    assert s.auth_status(pb.AuthStatusRequest()).enabled


def test_hs_secret_may_be_any_file_even_a_pem_key(tmp_path: Path, clock: ManualClock) -> None:
    # etcd 3.5.1 starts with a PEM file as the HMAC secret (observed); PyJWT alone refuses one
    (tmp_path / "rsa.key").write_bytes(_pem_private(_RSA))
    p = new_token_provider(f"jwt,sign-method=HS256,priv-key={tmp_path / 'rsa.key'}", clock, random.Random(1))
    token = p.assign("alice", 2, "", 1)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert p.info(token, 1) == AuthInfo("alice", 2)
