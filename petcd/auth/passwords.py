"""bcrypt password hashes, as etcd stores them (Go's x/crypto/bcrypt, ``$2a$`` hashes).

Hashing is slow on purpose (~70 ms at the default cost 10), and its salt is random, so it
happens once, on the member that takes the request, before the proposal: the raft entry carries
the hash (``hashedPassword``, base64 as etcd's API layer sends it), never the password, and
applying it is deterministic. Passwords are never logged.

Go's bcrypt uses at most the first 72 bytes of a password (the Blowfish key limit); Python's
``bcrypt`` refuses longer ones, so they are cut to 72 bytes here to accept and match the same
passwords as etcd.

``bcrypt`` is imported on the first hash or check, not with the module: most members never
need it, and it is one less import before a member serves.
"""

from __future__ import annotations

import base64
import binascii
import logging

from petcd.proto.etcdserverpb import rpc_pb2 as pb

log = logging.getLogger("petcd.auth")

MIN_COST = 4
MAX_COST = 31
DEFAULT_COST = 10
_MAX_PASSWORD_BYTES = 72


def effective_cost(cost: int) -> int:
    """etcd's rule: a cost outside 4..31 is replaced by the default, with a warning."""
    if MIN_COST <= cost <= MAX_COST:
        return cost
    log.warning("bcrypt cost %d is outside %d..%d; using the default cost %d", cost, MIN_COST, MAX_COST,
                DEFAULT_COST)
    return DEFAULT_COST


def _key(password: str) -> bytes:
    return password.encode("utf-8")[:_MAX_PASSWORD_BYTES]


def hash_password(password: str, cost: int = DEFAULT_COST) -> bytes:
    """The bcrypt hash of ``password`` (as stored in an authpb.User)."""
    import bcrypt  # lazy: see the module docstring

    return bcrypt.hashpw(_key(password), bcrypt.gensalt(rounds=cost, prefix=b"2a"))


def check_password(hashed: bytes, password: str) -> bool:
    """Whether ``password`` matches ``hashed``; False for an empty or malformed hash."""
    if not hashed:
        return False
    import bcrypt  # lazy: see the module docstring

    try:
        return bcrypt.checkpw(_key(password), hashed)
    except ValueError:
        return False


def encode_hash(hashed: bytes) -> str:
    """The form of a hash in AuthUserAddRequest / AuthUserChangePasswordRequest.hashedPassword."""
    return base64.b64encode(hashed).decode("ascii")


def decode_hash(encoded: str) -> bytes:
    """The hash carried in a request; ValueError if it is not standard base64 (etcd's check)."""
    try:
        return base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("hashedPassword is not base64") from exc


def prepare_user_add(req: pb.AuthUserAddRequest, cost: int) -> pb.AuthUserAddRequest:
    """What the API layer proposes for a UserAdd (etcd's v3_server.go): unless the user has
    no password, the password replaced by its hash. A hash the client computed itself is
    replaced too, as etcd does."""
    out = pb.AuthUserAddRequest()
    out.CopyFrom(req)
    if not (req.HasField("options") and req.options.no_password):
        out.hashedPassword = encode_hash(hash_password(req.password, cost))
        out.password = ""
    return out


def prepare_change_password(
    req: pb.AuthUserChangePasswordRequest, cost: int
) -> pb.AuthUserChangePasswordRequest:
    """What the API layer proposes for a UserChangePassword: a non-empty password replaced by
    its hash (an empty one is proposed as it is, so a client-computed hash goes through)."""
    out = pb.AuthUserChangePasswordRequest()
    out.CopyFrom(req)
    if req.password:
        out.hashedPassword = encode_hash(hash_password(req.password, cost))
        out.password = ""
    return out
