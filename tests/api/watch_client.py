"""A raw Watch stream for tests: requests go in through a queue, responses come out of another."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc

CALL_TIMEOUT = 10.0


class StreamEnded(Exception):
    """The server ended the stream with status OK."""


class WatchClient:
    def __init__(
        self,
        endpoint: str,
        metadata: Sequence[tuple[str, str]] = (),
        channel: grpc.Channel | None = None,
        read: bool = True,
    ) -> None:
        self._own_channel = channel is None
        # etcd's client takes responses of any size, as catch-up responses can be large
        self.channel = channel or grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", -1)])
        self.kv = pb_grpc.KVStub(self.channel)  # type: ignore[no-untyped-call]
        self._reqs: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self._out: queue.Queue[pb.WatchResponse | BaseException] = queue.Queue()
        stub = pb_grpc.WatchStub(self.channel)  # type: ignore[no-untyped-call]
        self.call = stub.Watch(iter(self._reqs.get, None), metadata=tuple(metadata))
        self._reader: threading.Thread | None = None
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        if self._reader is None:
            self._reader = threading.Thread(target=self._pump, daemon=True)
            self._reader.start()

    def _pump(self) -> None:
        try:
            for r in self.call:
                self._out.put(r)
            self._out.put(StreamEnded())
        except BaseException as exc:  # the stream's end, as an item the test can look at
            self._out.put(exc)

    # -- requests -------------------------------------------------------------------------------

    def create(self, key: bytes, range_end: bytes = b"", **kw: Any) -> None:
        self._reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=range_end, **kw)))

    def cancel(self, watch_id: int) -> None:
        self._reqs.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def progress(self) -> None:
        self._reqs.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def end_requests(self) -> None:
        """Half-close: no more requests."""
        self._reqs.put(None)

    # -- responses ------------------------------------------------------------------------------

    def next(self, timeout: float = CALL_TIMEOUT) -> pb.WatchResponse:
        try:
            item = self._out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch response within {timeout} s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def created(self, key: bytes, range_end: bytes = b"", **kw: Any) -> pb.WatchResponse:
        self.create(key, range_end, **kw)
        r = self.next()
        assert r.created, f"expected a created response, got watch_id={r.watch_id} with {len(r.events)} events"
        return r

    def quiet(self, wait: float = 0.3) -> list[pb.WatchResponse | BaseException]:
        """Whatever arrives within wait seconds (expected: nothing)."""
        out: list[pb.WatchResponse | BaseException] = []
        try:
            while True:
                out.append(self._out.get(timeout=wait))
        except queue.Empty:
            return out

    # -- kv -------------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes = b"v") -> int:
        return int(self.kv.Put(pb.PutRequest(key=key, value=value), timeout=CALL_TIMEOUT).header.revision)

    def delete(self, key: bytes, range_end: bytes = b"") -> int:
        r = self.kv.DeleteRange(pb.DeleteRangeRequest(key=key, range_end=range_end), timeout=CALL_TIMEOUT)
        return int(r.header.revision)

    def close(self) -> None:
        self._reqs.put(None)
        self.call.cancel()
        if self._own_channel:
            self.channel.close()


def events(r: pb.WatchResponse) -> list[tuple[str, bytes, int]]:
    return [("PUT" if e.type == 0 else "DELETE", e.kv.key, e.kv.mod_revision) for e in r.events]
