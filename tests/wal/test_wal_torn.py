"""Torn tails are cut off at open; damage before the tail is CorruptWALError with file + offset."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from walhelpers import data_end, ent, flip_byte, hs, last_segment, records_of

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal import WAL, CorruptWALError, WalSnapshot
from petcd.wal.record import HEADER_SIZE
from petcd.wal.segments import list_segments

SEG = 4096


def build(d: str, batches: list[list[int]], prealloc: bool, seg: int = SEG) -> None:
    """One save per batch of entry indexes (entries carry their index as data size)."""
    w = WAL.create(d, b"meta", segment_size=seg, preallocate=prealloc)
    for batch in batches:
        w.save(hs(1, 1, batch[0] - 1), [ent(i, data=bytes([i % 251]) * (i % 37)) for i in batch])
    w.close()


def read(d: str, prealloc: bool = True, seg: int = SEG) -> tuple[WAL, raftpb.HardState, list[int]]:
    w = WAL.open(d, segment_size=seg, preallocate=prealloc)
    _, state, ents = w.read_all()
    return w, state, [e.index for e in ents]


def check_recovers(d: str, expect: list[int], prealloc: bool) -> None:
    """Open repairs the tail, returns `expect`, and appends after it survive another restart."""
    w, _, got = read(d, prealloc)
    assert got == expect
    nxt = (expect[-1] if expect else 0) + 1
    w.save(hs(2, 1, 0), [ent(nxt, term=2, data=b"after-repair")])
    w.close()
    w, state, got = read(d, prealloc)
    assert got == [*expect, nxt]
    assert state.term == 2
    w.close()


@pytest.mark.parametrize("prealloc", [True, False], ids=["prealloc", "noprealloc"])
@pytest.mark.parametrize("damage", ["truncate", "zero"])
def test_every_byte_of_last_record(tmp_path: os.PathLike[str], prealloc: bool, damage: str) -> None:
    base = os.path.join(tmp_path, "base")
    build(base, [[1, 2, 3], [4, 5], [6]], prealloc)
    seg = last_segment(base)
    last = records_of(seg)[-1]  # the hard state record of the last save
    end = data_end(seg)
    with open(seg, "rb") as f:
        pristine = f.read()
    d = os.path.join(tmp_path, "work")
    for cut in range(last.offset, end):
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(base, d)
        path = last_segment(d)
        with open(path, "r+b") as f:
            if damage == "truncate":
                f.truncate(cut)
            else:  # a write that never reached the disk past `cut`: zeros, as preallocated
                f.seek(cut)
                f.write(bytes(end - cut))
        # the entry records of the last save are intact; only its hard state record is torn
        w, state, got = read(d, prealloc)
        assert got == [1, 2, 3, 4, 5, 6], cut
        w.close()
        with open(path, "rb") as f:
            repaired = f.read()
        if damage == "zero" and not any(pristine[cut:end]):
            assert state.commit == 5  # only zero padding was "lost": the record is whole
            continue
        assert state.commit == 3  # the hard state saved with batch [4, 5]
        assert repaired[: last.offset] == pristine[: last.offset]
        assert not repaired[last.offset :].strip(b"\x00")
    check_recovers(d, [1, 2, 3, 4, 5, 6], prealloc)


def test_torn_tail_is_logged_and_preallocation_restored(
    tmp_path: os.PathLike[str], caplog: pytest.LogCaptureFixture
) -> None:
    d = os.path.join(tmp_path, "wal")
    build(d, [[1, 2], [3]], prealloc=True)
    path = last_segment(d)
    end = data_end(path)
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(b"\x07" * 5)  # a fragment of a header that was being written
    with caplog.at_level(logging.WARNING, logger="petcd.wal"):
        w, _, got = read(d)
    assert got == [1, 2, 3]
    assert any("torn tail" in r.getMessage() and path in r.getMessage() for r in caplog.records)
    assert os.path.getsize(path) == SEG
    w.close()


def test_torn_first_entry_of_new_segment(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"meta", segment_size=600, preallocate=False)
    i = 0
    while len(w.segments) < 2:
        i += 1
        w.save(hs(1, 1, i), [ent(i, data=bytes(100))])
    w.save(None, [ent(i + 1, data=bytes(100))])
    w.close()
    path = last_segment(d)
    recs = records_of(path)
    with open(path, "r+b") as f:
        f.truncate(recs[-1].offset + HEADER_SIZE + 3)
    check_recovers(d, list(range(1, i + 1)), prealloc=False)


def test_crc_mismatch_in_final_record_is_torn(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    build(d, [[1, 2], [3, 4]], prealloc=False)
    path = last_segment(d)
    flip_byte(path, records_of(path)[-1].offset + HEADER_SIZE)  # data byte of the final record
    check_recovers(d, [1, 2, 3, 4], prealloc=False)


@settings(max_examples=60, deadline=None, database=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=6),
    prealloc=st.booleans(),
    damage=st.sampled_from(["truncate", "zero", "garbage", "flip_final"]),
    where=st.floats(0, 1, exclude_max=True),
    garbage=st.binary(min_size=1, max_size=40),
)
def test_damaged_last_write_recovers(
    sizes: list[int], prealloc: bool, damage: str, where: float, garbage: bytes
) -> None:
    batches: list[list[int]] = []
    nxt = 1
    for n in sizes:
        batches.append(list(range(nxt, nxt + n)))
        nxt += n
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "wal")
        build(d, batches[:-1], prealloc, seg=1 << 20)
        start = data_end(last_segment(d))
        # the last write, appended by a WAL reopened for it
        w = WAL.open(d, segment_size=1 << 20, preallocate=prealloc)
        w.read_all()
        last = batches[-1]
        w.save(hs(1, 1, last[0] - 1), [ent(i, data=bytes(i % 37)) for i in last])
        w.close()
        path = last_segment(d)
        end = data_end(path)
        recs = [r for r in records_of(path) if r.offset >= start]
        rec_ends = [r.offset for r in recs[1:]] + [end]
        earlier = [i for b in batches[:-1] for i in b]
        with open(path, "rb") as f:
            original = f.read()
        damaged = bytearray(original)
        if damage in ("truncate", "zero"):
            cut = start + int(where * (end - start))
            if damage == "truncate":
                del damaged[cut:]
            else:
                damaged[cut:end] = bytes(end - cut)
        elif damage == "garbage":
            damaged[end : end + len(garbage)] = garbage
        else:
            final = recs[-1]
            damaged[final.offset + int(where * (rec_ends[-1] - final.offset))] ^= 0x81
        with open(path, "wb") as f:
            f.write(damaged)
        # the records of the last write that are byte-for-byte intact, up to the first damaged one
        intact = 0
        for r, r_end in zip(recs, rec_ends, strict=True):
            if damaged[r.offset : r_end] != original[r.offset : r_end]:
                break
            intact += 1
        expect = earlier + last[:intact]
        check_recovers(d, expect, prealloc)


# ---- corruption before the tail ------------------------------------------------------------


@settings(max_examples=40, deadline=None, database=None)
@given(pick=st.floats(0, 1, exclude_max=True), byte=st.floats(0, 1, exclude_max=True))
def test_middle_corruption_names_file_and_offset(pick: float, byte: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "wal")
        build(d, [[1, 2, 3], [4, 5, 6], [7, 8, 9]], prealloc=False)
        path = last_segment(d)
        recs = records_of(path)
        end = data_end(path)
        # any record followed by at least two others, any byte of it that the crc or header covers
        k = int(pick * (len(recs) - 2))
        rec = recs[k]
        size = HEADER_SIZE + len(rec.data)
        flip_byte(path, rec.offset + int(byte * size))
        with pytest.raises(CorruptWALError) as ei:
            read(d, prealloc=False)
        assert ei.value.path == path
        assert ei.value.offset == rec.offset
        assert path in str(ei.value) and f"offset {rec.offset}" in str(ei.value)
        # nothing was truncated and the lock was released
        assert os.path.getsize(path) == end
        with pytest.raises(CorruptWALError):
            read(d, prealloc=False)


def _two_segments(d: str) -> list[str]:
    w = WAL.create(d, b"meta", segment_size=700, preallocate=False)
    i = 0
    while len(w.segments) < 3:
        i += 1
        w.save(hs(1, 1, i), [ent(i, data=bytes(100))])
    w.close()
    return [s.path for s in list_segments(d)]


def test_damage_in_final_record_of_non_last_segment(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    paths = _two_segments(d)
    rec = records_of(paths[1])[-1]
    flip_byte(paths[1], rec.offset + HEADER_SIZE + 1)
    with pytest.raises(CorruptWALError) as ei:
        read(d, prealloc=False)
    assert (ei.value.path, ei.value.offset) == (paths[1], rec.offset)


def test_truncated_non_last_segment(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    paths = _two_segments(d)
    rec = records_of(paths[0])[-1]
    with open(paths[0], "r+b") as f:
        f.truncate(rec.offset + 5)
    with pytest.raises(CorruptWALError) as ei:
        read(d, prealloc=False)
    assert (ei.value.path, ei.value.offset) == (paths[0], rec.offset)


def test_zeroed_sector_before_valid_records(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    build(d, [[i] for i in range(1, 40)], prealloc=False)
    path = last_segment(d)
    recs = records_of(path)
    victim = recs[10]
    with open(path, "r+b") as f:
        f.seek(victim.offset)
        f.write(bytes(HEADER_SIZE + len(victim.data)))
    with pytest.raises(CorruptWALError) as ei:
        read(d, prealloc=False)
    assert ei.value.offset == victim.offset


def test_damage_in_second_to_last_record_is_not_a_tail(tmp_path: os.PathLike[str]) -> None:
    # the final record still chains from the damaged one's stored crc, so this is corruption
    d = os.path.join(tmp_path, "wal")
    build(d, [[1, 2], [3, 4]], prealloc=True)
    path = last_segment(d)
    recs = records_of(path)
    victim = recs[-2]
    flip_byte(path, victim.offset + HEADER_SIZE + 1)
    with pytest.raises(CorruptWALError) as ei:
        read(d)
    assert (ei.value.path, ei.value.offset) == (path, victim.offset)


def test_read_only_paths_leave_torn_tail_alone(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    build(d, [[1, 2], [3]], prealloc=False)
    path = last_segment(d)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 2)
    assert WAL.valid_snapshot_entries(d) == [WalSnapshot(0, 0)]
    assert os.path.getsize(path) == size - 2
