"""``/health`` as etcd 3.5 answers it, and ``/livez`` / ``/readyz`` as etcd 3.6 documents them.

``/health``: GET only; ``{"health":"true","reason":""}`` with 200, or ``"false"`` and a reason
with 503. The checks, in etcd's order: an active alarm (``ALARM NOSPACE``, ``ALARM CORRUPT``;
``?exclude=NOSPACE`` skips one kind), a known leader (``RAFT NO LEADER``), then a range through
the server (``RANGE ERROR:<etcd's error text>``). ``?serializable=true`` skips the leader check
and reads locally, as etcd 3.5.3 and later do; etcd 3.5.1 itself ignores that parameter (it has
no serializable health check yet) -- a deliberate difference, because Kubernetes' liveness probes
for etcd ask for it.

``/livez`` and ``/readyz`` do not exist in etcd 3.5.1 (it answers 404); petcd serves them in the
form etcd 3.6 does: text, ``ok`` when every check passes, each check's line ``[+]name ok`` or
``[-]name failed: reason`` with ``?verbose`` or on failure (then 503), ``?exclude=name`` to skip
one. ``/livez`` checks a serializable read; ``/readyz`` the CORRUPT alarm, a serializable read
and a linearizable read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from petcd import errors
from petcd.clock import wait_for
from petcd.http.responses import method_not_allowed, text_error
from petcd.http.server import Request, Response
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.server.apply import ALARM_CORRUPT, ALARM_NOSPACE
from petcd.server.etcdserver import EtcdServer

__all__ = ["ErrorText", "HealthChecker"]

# etcd's text for an error (petcd.api.errors knows them; the command hands them in)
ErrorText = Callable[[errors.PetcdError], str]
_ALARM_NAMES: dict[int, str] = {int(ALARM_NOSPACE): "NOSPACE", int(ALARM_CORRUPT): "CORRUPT"}


@dataclass(slots=True)
class HealthCounts:
    """etcd_server_health_success / etcd_server_health_failures."""

    success: int = 0
    failures: int = 0


class HealthChecker:
    def __init__(self, srv: EtcdServer, error_text: ErrorText) -> None:
        self._srv = srv
        self._error_text = error_text
        self.counts = HealthCounts()

    # -- /health ------------------------------------------------------------------------

    async def health(self, req: Request) -> Response:
        if req.method != "GET":
            return method_not_allowed()
        excluded = set(req.query.get("exclude", ()))
        serializable = req.query.get("serializable", [""])[0] == "true"
        healthy, reason = await self.check(excluded, serializable)
        if healthy:
            self.counts.success += 1
        else:
            self.counts.failures += 1
        body = json.dumps({"health": "true" if healthy else "false", "reason": reason}, separators=(",", ":"))
        if not healthy:
            return text_error(503, body)  # etcd answers a failure with http.Error
        # etcd's handler sets no Content-Type: Go sniffs text/plain
        return Response(200, [], body.encode(), sniffed_type="text/plain; charset=utf-8")

    async def check(self, excluded: set[str], serializable: bool) -> tuple[bool, str]:
        for name in self.active_alarms():
            if name in excluded:
                continue
            return False, f"ALARM {name}"
        if not serializable and self._srv.leader == 0:
            return False, "RAFT NO LEADER"
        failure = await self.range_failure(serializable)
        if failure:
            return False, f"RANGE ERROR:{failure}"
        return True, ""

    def active_alarms(self) -> list[str]:
        return [_ALARM_NAMES.get(kind, "UNKNOWN") for (_, kind) in sorted(self._srv.alarms)]

    async def range_failure(self, serializable: bool) -> str:
        """'' when a keys-only, limit-1 range succeeds within the request timeout, else etcd's
        text of the error."""
        srv = self._srv
        req = pb.RangeRequest(key=b"\0", keys_only=True, limit=1, serializable=serializable)
        try:
            await wait_for(srv.clock, srv.range(req), srv.settings.request_timeout)
        except TimeoutError:
            return self._error_text(errors.RequestTimeoutError())
        except errors.PetcdError as exc:
            return self._error_text(exc)
        return ""

    # -- /livez, /readyz (etcd 3.6) -------------------------------------------------------

    async def livez(self, req: Request) -> Response:
        return await self._checks(req, "livez", (("serializable_read", self._serializable_read),))

    async def readyz(self, req: Request) -> Response:
        return await self._checks(req, "readyz", (
            ("data_corruption", self._no_corruption),
            ("serializable_read", self._serializable_read),
            ("linearizable_read", self._linearizable_read),
        ))

    async def _no_corruption(self) -> str:
        return "ALARM CORRUPT" if "CORRUPT" in self.active_alarms() else ""

    async def _serializable_read(self) -> str:
        return await self.range_failure(True)

    async def _linearizable_read(self) -> str:
        return await self.range_failure(False)

    async def _checks(self, req: Request, kind: str,
                      checks: Sequence[tuple[str, Callable[[], Awaitable[str]]]]) -> Response:
        if req.method != "GET":
            return method_not_allowed()
        excluded = set(req.query.get("exclude", ()))
        lines: list[str] = []
        failed = False
        for name, run in checks:
            if name in excluded:
                lines.append(f"[+]{name} excluded: ok\n")
                continue
            reason = await run()
            if reason:
                failed = True
                lines.append(f"[-]{name} failed: {reason}\n")
            else:
                lines.append(f"[+]{name} ok\n")
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
        if failed:
            return Response(503, headers, ("".join(lines) + f"{kind} check failed\n").encode())
        verbose = "verbose" in req.query
        return Response(200, headers, (("".join(lines) if verbose else "") + "ok\n").encode())
