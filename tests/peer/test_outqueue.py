"""The per-peer outgoing queue on its own: bounds, keep-newest while down, batch byte cap."""

from __future__ import annotations

from petcd.peer.outqueue import FRAMING_BYTES, OutQueue
from tests.peer.cluster import msg


def test_full_queue_refuses_new_messages_while_up() -> None:
    q = OutQueue(max_messages=3, max_bytes=1 << 20, max_messages_down=2)
    q.set_up(True)
    assert all(q.put(msg(2, 1, i)) for i in range(3))
    assert not q.put(msg(2, 1, 4))
    assert q.dropped == 1
    assert [m.index for m in q.take_batch(1 << 20)] == [0, 1, 2]
    assert len(q) == 0 and q.nbytes == 0


def test_byte_bound_while_up() -> None:
    m = msg(2, 1, 1, payload=b"z" * 1000)
    q = OutQueue(max_messages=100, max_bytes=3 * m.ByteSize(), max_messages_down=2)
    q.set_up(True)
    assert q.put(m) and q.put(m) and q.put(m)
    assert not q.put(m)


def test_down_keeps_the_newest_and_going_down_trims() -> None:
    q = OutQueue(max_messages=100, max_bytes=1 << 20, max_messages_down=3)
    for i in range(10):
        q.put(msg(2, 1, i))
    assert len(q) == 3 and q.dropped == 7
    q.set_up(True)
    for i in range(10, 20):
        q.put(msg(2, 1, i))
    assert len(q) == 13
    assert q.set_up(False) == 10
    assert [m.index for m in q.take_batch(1 << 20)] == [17, 18, 19]


def test_batches_respect_the_byte_cap_but_always_take_one() -> None:
    q = OutQueue(max_messages=100, max_bytes=1 << 20, max_messages_down=100)
    q.set_up(True)
    m = msg(2, 1, 1, payload=b"p" * 100)
    per = m.ByteSize() + FRAMING_BYTES
    for _ in range(10):
        q.put(m)
    assert len(q.take_batch(3 * per)) == 3
    assert len(q.take_batch(3 * per - 1)) == 2
    assert len(q.take_batch(1)) == 1  # one oversized message still goes, alone
    assert len(q) == 4 and q.nbytes == 4 * m.ByteSize()


def test_encoded_batches_are_what_protobuf_encodes() -> None:
    from petcd.proto.peerpb import peer_pb2 as peerpb

    q = OutQueue(max_messages=1000, max_bytes=1 << 24, max_messages_down=1000)
    q.set_up(True)
    # sizes whose length prefixes take one, two and three bytes
    msgs = [msg(2, 1, i, payload=b"e" * n) for i, n in enumerate((0, 10, 126, 127, 300, 20000, 70000))]
    for m in msgs:
        q.put(m)
    data, count = q.take_encoded(1 << 24)
    assert count == len(msgs) and len(q) == 0 and q.nbytes == 0
    assert data == peerpb.MessageBatch(messages=msgs).SerializeToString()
    assert list(peerpb.MessageBatch.FromString(data).messages) == msgs
    for m in msgs:
        q.put(m)
    # the same byte cap as take_batch
    assert q.take_encoded(msgs[0].ByteSize() + msgs[1].ByteSize() + 2 * FRAMING_BYTES)[1] == 2
    assert q.take_encoded(0) == (peerpb.MessageBatch(messages=msgs[2:3]).SerializeToString(), 1)
