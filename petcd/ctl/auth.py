"""auth, user and role commands (etcdctl 3.5)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable

from petcd.ctl.base import B, Env, S, to_bytes
from petcd.ctl.cli import EXIT_BAD_ARGS, Command, CtlExit, Runner
from petcd.ctl.kv import prefix_end
from petcd.proto.authpb import auth_pb2
from petcd.proto.etcdserverpb import rpc_pb2 as pb


def _call(env: Env, method: str, req: object) -> object:
    with env.client() as c:
        return c.unary("Auth", method, req)


def _ask_twice(name: str) -> str:
    try:
        p1 = getpass.getpass(f"Password of {name}: ")
    except (EOFError, OSError) as exc:
        raise CtlExit(EXIT_BAD_ARGS, f"failed to ask password: {exc}") from None
    if not p1:
        raise CtlExit(EXIT_BAD_ARGS, "empty password")
    try:
        p2 = getpass.getpass(f"Type password of {name} again for confirmation: ")
    except (EOFError, OSError) as exc:
        raise CtlExit(EXIT_BAD_ARGS, f"failed to ask password: {exc}") from None
    if p1 != p2:
        raise CtlExit(EXIT_BAD_ARGS, "given passwords are different")
    return p1


def _stdin_word() -> str:
    words = sys.stdin.readline().split()
    return words[0] if words else ""


def auth_enable(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "auth enable command does not accept any arguments")
    with env.client() as c:
        c.unary("Auth", "AuthEnable", pb.AuthEnableRequest())
    print("Authentication Enabled")
    return 0


def auth_disable(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "auth disable command does not accept any arguments")
    with env.client() as c:
        c.unary("Auth", "AuthDisable", pb.AuthDisableRequest())
    print("Authentication Disabled")
    return 0


def auth_status(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "auth status command does not accept any arguments")
    display = env.display()
    display.auth_status(_call(env, "AuthStatus", pb.AuthStatusRequest()))
    return 0


def user_add(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "user add command requires user name as its argument")
    arg = env.args[0]
    no_password = env.inv.bool("no-password")
    password = ""
    if no_password:
        user = arg
    elif env.inv.text("new-user-password"):
        user, password = arg, env.inv.text("new-user-password")
    else:
        user, sep, password = arg.partition(":")
        if sep and not user:
            raise CtlExit(EXIT_BAD_ARGS, "empty user name is not allowed")
        if not sep:
            password = _ask_twice(arg) if env.inv.bool("interactive") else _stdin_word()
    display = env.display()
    resp = _call(env, "UserAdd", pb.AuthUserAddRequest(name=user, password=password,
                                                       options=auth_pb2.UserAddOptions(no_password=no_password)))
    display.auth_simple(resp, f"User {user} created\n")
    return 0


def _need(env: Env, n: int, msg: str) -> list[str]:
    if len(env.args) != n:
        raise CtlExit(EXIT_BAD_ARGS, msg)
    return env.args


def user_delete(env: Env) -> int:
    (name,) = _need(env, 1, "user delete command requires user name as its argument")
    display = env.display()
    display.auth_simple(_call(env, "UserDelete", pb.AuthUserDeleteRequest(name=name)), f"User {name} deleted\n")
    return 0


def user_get(env: Env) -> int:
    (name,) = _need(env, 1, "user get command requires user name as its argument")
    display = env.display()
    with env.client() as c:
        resp = c.unary("Auth", "UserGet", pb.AuthUserGetRequest(name=name))
        if env.inv.bool("detail"):
            print(f"User: {name}")
            for role in resp.roles:
                print()
                display.role_get(role, c.unary("Auth", "RoleGet", pb.AuthRoleGetRequest(role=role)))
            return 0
    display.user_get(name, resp)
    return 0


def user_list(env: Env) -> int:
    _need(env, 0, "user list command requires no arguments")
    display = env.display()
    display.user_list(_call(env, "UserList", pb.AuthUserListRequest()))
    return 0


def user_passwd(env: Env) -> int:
    (name,) = _need(env, 1, "user passwd command requires user name as its argument")
    password = _ask_twice(name) if env.inv.bool("interactive") else _stdin_word()
    display = env.display()
    resp = _call(env, "UserChangePassword", pb.AuthUserChangePasswordRequest(name=name, password=password))
    display.auth_simple(resp, "Password updated\n")
    return 0


def user_grant(env: Env) -> int:
    user, role = _need(env, 2, "user grant command requires user name and role name as its argument")
    display = env.display()
    resp = _call(env, "UserGrantRole", pb.AuthUserGrantRoleRequest(user=user, role=role))
    display.auth_simple(resp, f"Role {role} is granted to user {user}\n")
    return 0


def user_revoke(env: Env) -> int:
    user, role = _need(env, 2, "user revoke-role requires user name and role name as its argument")
    display = env.display()
    resp = _call(env, "UserRevokeRole", pb.AuthUserRevokeRoleRequest(name=user, role=role))
    display.auth_simple(resp, f"Role {role} is revoked from user {user}\n")
    return 0


def role_add(env: Env) -> int:
    (role,) = _need(env, 1, "role add command requires role name as its argument")
    display = env.display()
    display.auth_simple(_call(env, "RoleAdd", pb.AuthRoleAddRequest(name=role)), f"Role {role} created\n")
    return 0


def role_delete(env: Env) -> int:
    (role,) = _need(env, 1, "role delete command requires role name as its argument")
    display = env.display()
    display.auth_simple(_call(env, "RoleDelete", pb.AuthRoleDeleteRequest(role=role)), f"Role {role} deleted\n")
    return 0


def role_get(env: Env) -> int:
    (role,) = _need(env, 1, "role get command requires role name as its argument")
    display = env.display()
    display.role_get(role, _call(env, "RoleGet", pb.AuthRoleGetRequest(role=role)))
    return 0


def role_list(env: Env) -> int:
    _need(env, 0, "role list command requires no arguments")
    display = env.display()
    display.role_list(_call(env, "RoleList", pb.AuthRoleListRequest()))
    return 0


def _perm_range(env: Env, args: list[str]) -> tuple[bytes, bytes]:
    prefix, from_key = env.inv.bool("prefix"), env.inv.bool("from-key")
    key = to_bytes(args[0])
    if not key:
        if prefix and from_key:
            raise CtlExit(EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive")
        return b"\x00", (b"\x00" if prefix or from_key else b"")
    if len(args) == 1:
        if prefix:
            if from_key:
                raise CtlExit(EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive")
            return key, prefix_end(key)
        return key, (b"\x00" if from_key else b"")
    if prefix:
        raise CtlExit(EXIT_BAD_ARGS, "unexpected endkey argument with --prefix flag")
    if from_key:
        raise CtlExit(EXIT_BAD_ARGS, "unexpected endkey argument with --from-key flag")
    return key, to_bytes(args[1])


def role_grant(env: Env) -> int:
    if len(env.args) < 3:
        raise CtlExit(EXIT_BAD_ARGS,
                      "role grant command requires role name, permission type, and key [endkey] as its argument")
    types = {"READ": auth_pb2.Permission.READ, "WRITE": auth_pb2.Permission.WRITE,
             "READWRITE": auth_pb2.Permission.READWRITE}
    ptype = types.get(env.args[1].upper())
    if ptype is None:
        raise CtlExit(EXIT_BAD_ARGS, f"invalid permission type: {env.args[1]}")
    key, end = _perm_range(env, env.args[2:])
    display = env.display()
    perm = auth_pb2.Permission(permType=ptype, key=key, range_end=end)
    resp = _call(env, "RoleGrantPermission", pb.AuthRoleGrantPermissionRequest(name=env.args[0], perm=perm))
    display.auth_simple(resp, f"Role {env.args[0]} updated\n")
    return 0


def role_revoke(env: Env) -> int:
    if len(env.args) < 2:
        raise CtlExit(EXIT_BAD_ARGS, "role revoke-permission command requires role name and key [endkey] as its argument")
    key, end = _perm_range(env, env.args[1:])
    display = env.display()
    resp = _call(env, "RoleRevokePermission",
                 pb.AuthRoleRevokePermissionRequest(role=env.args[0], key=key, range_end=end))
    role, k, e = env.args[0], env.args[1], end.decode("utf-8", "surrogateescape")
    if not e:
        text = f"Permission of key {k} is revoked from role {role}\n"
    elif e != "\x00":
        text = f"Permission of range [{k}, {e}) is revoked from role {role}\n"
    else:
        text = f"Permission of range [{k}, <open ended> is revoked from role {role}\n"
    display.auth_simple(resp, text)
    return 0


def _r(fn: Callable[[Env], int]) -> Runner:
    return lambda inv: fn(Env(inv))


def commands() -> list[Command]:
    interactive = B("interactive", "Read password from stdin instead of interactive terminal", True)
    auth = Command("auth <enable or disable>", "Enable or disable authentication").add(
        Command("enable", "Enables authentication", _r(auth_enable)),
        Command("disable", "Disables authentication", _r(auth_disable)),
        Command("status", "Returns authentication status", _r(auth_status)),
    )
    user = Command("user <subcommand>", "User related commands").add(
        Command("add <user name or user:password> [options]", "Adds a new user", _r(user_add), flags=[
            interactive, S("new-user-password", "", "Supply password from the command line flag"),
            B("no-password", "Create a user without password (CN based auth only)")]),
        Command("delete <user name>", "Deletes a user", _r(user_delete)),
        Command("get <user name> [options]", "Gets detailed information of a user", _r(user_get),
                flags=[B("detail", "Show permissions of roles granted to the user")]),
        Command("list", "Lists all users", _r(user_list)),
        Command("passwd <user name> [options]", "Changes password of user", _r(user_passwd), flags=[
            B("interactive", "If true, read password from stdin instead of interactive terminal", True)]),
        Command("grant-role <user name> <role name>", "Grants a role to a user", _r(user_grant)),
        Command("revoke-role <user name> <role name>", "Revokes a role from a user", _r(user_revoke)),
    )
    perm_flags = [B("prefix", "grant a prefix permission"),
                  B("from-key", "grant a permission of keys that are greater than or equal to the given key using "
                                "byte compare")]
    role = Command("role <subcommand>", "Role related commands").add(
        Command("add <role name>", "Adds a new role", _r(role_add)),
        Command("delete <role name>", "Deletes a role", _r(role_delete)),
        Command("get <role name>", "Gets detailed information of a role", _r(role_get)),
        Command("list", "Lists all roles", _r(role_list)),
        Command("grant-permission [options] <role name> <permission type> <key> [endkey]", "Grants a key to a role",
                _r(role_grant), flags=perm_flags),
        Command("revoke-permission <role name> <key> [endkey]", "Revokes a key from a role", _r(role_revoke),
                flags=[B("prefix", "revoke a prefix permission"),
                       B("from-key", "revoke a permission of keys that are greater than or equal to the given key "
                                     "using byte compare")]),
    )
    return [auth, user, role]
