"""SSE decoding: arbitrary chunk splits, multibyte text across boundaries, CRLF."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import httpx
import orjson
from httpx_sse import EventSource
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.fakes import SSE_HEADERS, ChunkStream, cid
from topics_client import RecordsEvent
from topics_client._sse import (
    StreamErrorEvent,
    WatchCursor,
    decode_composite_id,
    decode_error_frame,
)

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
payloads = st.lists(
    st.one_of(
        texts,
        st.integers(-(2**63), 2**63 - 1),
        st.none(),
        st.dictionaries(texts, texts, max_size=2),
    ),
    min_size=1,
    max_size=4,
)


def encode(batches: list[list[Any]], newline: bytes) -> tuple[bytes, list[tuple[int, Any]]]:
    out, expected, seq = b"", [], 0
    for batch in batches:
        records = []
        for data in batch:
            seq += 1
            records.append({"$seq": seq, "$ts": seq, "data": data})
            expected.append((seq, data))
        body = {
            "topic": "t",
            "from_seq": seq - len(batch),
            "to_seq": seq,
            "head_seq": seq,
            "records": records,
        }
        lines = [
            f"id: {cid({'t': seq})}".encode(),
            b"event: record",
            b"data: " + orjson.dumps(body),
            b": hb",
            b"",
        ]
        out += newline.join(lines) + newline + b": hb 17\n\n"
    return out, expected


def split(blob: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(blob) + 1) for c in cuts} | {0, len(blob)})
    return [blob[a:b] for a, b in itertools.pairwise(points) if b > a]


def decode_sync(chunks: list[bytes]) -> list[tuple[int, Any]]:
    response = httpx.Response(200, headers=SSE_HEADERS, stream=ChunkStream(chunks))
    cursor, out = WatchCursor(), []
    for sse in EventSource(response).iter_sse():
        event = cursor.feed(sse.event, sse.data, sse.id)
        if isinstance(event, RecordsEvent):
            out.extend((r.seq, r.data) for r in event.records)
    return out


async def decode_async(chunks: list[bytes]) -> list[tuple[int, Any]]:
    response = httpx.Response(200, headers=SSE_HEADERS, stream=ChunkStream(chunks))
    cursor, out = WatchCursor(), []
    async for sse in EventSource(response).aiter_sse():
        event = cursor.feed(sse.event, sse.data, sse.id)
        if isinstance(event, RecordsEvent):
            out.extend((r.seq, r.data) for r in event.records)
    return out


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(payloads, min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_any_chunking_decodes_the_same(
    batches: list[list[Any]], cuts: list[int], newline: bytes
) -> None:
    blob, expected = encode(batches, newline)
    chunks = split(blob, cuts)
    assert decode_sync(chunks) == expected
    assert anyio.run(decode_async, chunks) == expected


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=50))
def test_multibyte_char_split_inside_its_bytes(cut: int, pad: int) -> None:
    body = {
        "topic": "t",
        "from_seq": 0,
        "to_seq": 1,
        "head_seq": 1,
        "records": [{"$seq": 1, "$ts": 1, "data": "x" * pad + "é€😀"}],
    }
    blob = b"event: record\ndata: " + orjson.dumps(body) + b"\n\n"
    cut = min(cut + pad, len(blob) - 1)
    assert decode_sync([blob[:cut], blob[cut:]]) == [(1, "x" * pad + "é€😀")]


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2**63), max_size=5))
def test_composite_id_roundtrip(cursors: dict[str, int]) -> None:
    assert decode_composite_id(cid(cursors)) == cursors


def test_composite_id_rejects_opaque_tokens() -> None:
    for token in ["", "ckpt:1", "bm90IGpzb24", cid({"a": "x"}), "WzFd"]:  # type: ignore[dict-item]
        assert decode_composite_id(token) is None
    assert decode_composite_id(cid({"a": 1}) + "==") == {"a": 1}  # padded input accepted


def test_error_frame_variants() -> None:
    shutdown = decode_error_frame('{"code":"server_shutting_down","message":"bye"}')
    assert shutdown == StreamErrorEvent("server_shutting_down", "bye", True, None, shutdown.data)
    pacing = decode_error_frame('{"code":429,"error":"slow","retry_after_ms":10,"topics":["a"]}')
    assert not pacing.terminal and pacing.retry_after_ms == 10 and pacing.data["topics"] == ["a"]
    assert decode_error_frame("not json").message == "not json"
    assert decode_error_frame('{"code":409}').message == "409"


def test_cursor_drops_duplicates_and_stale_tombstones() -> None:
    cursor = WatchCursor({"t": 5})

    def rec(seqs: list[int], to: int) -> str:
        records = [{"$seq": s, "$ts": s, "data": s} for s in seqs]
        return orjson.dumps(
            {"topic": "t", "from_seq": 0, "to_seq": to, "head_seq": to, "records": records}
        ).decode()

    assert cursor.feed("record", rec([4, 5], 5), "i1") is None
    event = cursor.feed("record", rec([5, 6, 8], 9), "i2")
    assert isinstance(event, RecordsEvent) and [r.seq for r in event.records] == [6, 8]
    assert cursor.cursors == {"t": 9} and cursor.last_event_id == "i2"
    stale = {
        "topic": "t",
        "reason": "cap",
        "gap_from": 1,
        "gap_to": 3,
        "earliest_seq": 4,
        "head_seq": 9,
    }
    assert cursor.feed("tombstone", orjson.dumps(stale).decode(), "i3") is None
    recreated = {**stale, "reason": "recreated", "gap_to": 2, "earliest_seq": 1, "head_seq": 2}
    gap = cursor.feed("tombstone", orjson.dumps(recreated).decode(), "i4")
    assert gap is not None and cursor.cursors == {"t": 0}
    assert cursor.feed("message", "", "i4") is None  # heartbeat-induced empty dispatch


def test_cursor_sees_recreation_behind_a_first_read_label() -> None:
    """A new session's first read labels every tombstone ``from_seq_too_old``; a head
    below the caller's cursor still means a recreated topic, read from its start."""
    cursor = WatchCursor({"t": 6})
    relabelled = {
        "topic": "t",
        "reason": "from_seq_too_old",
        "gap_from": 1,
        "gap_to": 2,
        "earliest_seq": 1,
        "head_seq": 2,
    }
    gap = cursor.feed("tombstone", orjson.dumps(relabelled).decode(), "i1")
    assert gap is not None and gap.reason == "recreated" and gap.cursor == 6
    assert cursor.cursors == {"t": 0}
    records = [{"$seq": s, "$ts": s, "data": s} for s in (1, 2)]
    frame = {"topic": "t", "from_seq": 6, "to_seq": 2, "head_seq": 2, "records": records}
    event = cursor.feed("record", orjson.dumps(frame).decode(), "i2")
    assert isinstance(event, RecordsEvent) and [r.seq for r in event.records] == [1, 2]
    assert cursor.cursors == {"t": 2}


def test_shutdown_frame_is_not_a_watch_event() -> None:
    cursor = WatchCursor({"t": 1})
    assert cursor.feed("error", '{"code":"server_shutting_down","error":"bye"}', "") is None
    assert cursor.error is None
