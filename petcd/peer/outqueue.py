"""The bounded queue of raft messages waiting for one peer's stream.

Raft tolerates lost messages (it retransmits on heartbeats and probes), so the queue never
makes a caller wait: when it is full the new message is dropped. While the peer is
unreachable the queue keeps only the newest few messages: on reconnect the latest heartbeat
or append gets the peer talking again, and a backlog of stale ones would only delay that.
"""

from __future__ import annotations

from collections import deque

from petcd.proto.raftpb import raft_pb2 as raftpb

# bytes a message adds to a MessageBatch beyond its own size (field tag and length prefix), at most
FRAMING_BYTES = 6
# MessageBatch.messages is field 4, length-delimited: its tag byte on the wire
_MESSAGES_TAG = bytes([4 << 3 | 2])


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class OutQueue:
    def __init__(self, max_messages: int, max_bytes: int, max_messages_down: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_messages_down = max_messages_down
        # each message with its encoding: sizing a message costs upb an encoding anyway, and a
        # framed stream sends the encodings as they are (no MessageBatch copy of the messages)
        self._items: deque[tuple[raftpb.Message, bytes]] = deque()
        self._bytes = 0
        # False until the stream is accepted, and after it fails
        self.up = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, msg: raftpb.Message) -> bool:
        """Queue ``msg``; False if it (or, while down, an older message) was dropped."""
        data = msg.SerializeToString()
        size = len(data)
        if not self.up:
            self._items.append((msg, data))
            self._bytes += size
            return self._trim(self.max_messages_down) == 0
        if len(self._items) >= self.max_messages or (self._items and self._bytes + size > self.max_bytes):
            self.dropped += 1
            return False
        self._items.append((msg, data))
        self._bytes += size
        return True

    def set_up(self, up: bool) -> int:
        """Record the stream's state; going down trims to the newest messages. Returns drops."""
        self.up = up
        return 0 if up else self._trim(self.max_messages_down)

    def _trim(self, keep: int) -> int:
        n = 0
        while len(self._items) > keep or (len(self._items) > 1 and self._bytes > self.max_bytes):
            _, data = self._items.popleft()
            self._bytes -= len(data)
            n += 1
        self.dropped += n
        return n

    def take_batch(self, max_bytes: int) -> list[raftpb.Message]:
        """The oldest messages whose batch takes at most ``max_bytes`` (always at least one)."""
        return [msg for msg, _ in self._take(max_bytes)]

    def take_encoded(self, max_bytes: int) -> tuple[bytes, int]:
        """What take_batch takes, as the encoding of a MessageBatch holding just those messages
        (byte for byte what MessageBatch(messages=...).SerializeToString() gives), and how many."""
        parts: list[bytes] = []
        taken = self._take(max_bytes)
        for _, data in taken:
            parts += (_MESSAGES_TAG, _varint(len(data)), data)
        return b"".join(parts), len(taken)

    def _take(self, max_bytes: int) -> list[tuple[raftpb.Message, bytes]]:
        out: list[tuple[raftpb.Message, bytes]] = []
        total = 0
        items = self._items
        taken = 0
        while items:
            size = len(items[0][1])
            if out and total + size + FRAMING_BYTES > max_bytes:
                break
            out.append(items.popleft())
            total += size + FRAMING_BYTES
            taken += size
        self._bytes -= taken
        return out

    def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        self._bytes = 0
        self.dropped += n
        return n
