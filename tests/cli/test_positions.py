from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topics_cli.positions import (
    FromPos,
    PositionError,
    UntilPos,
    format_duration,
    parse_duration_ms,
    parse_from,
    parse_time_ms,
    parse_until,
    resolve_from,
    resolve_until,
)

NOW = 1_760_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start", FromPos("start")),
        ("end", FromPos("end")),
        ("0", FromPos("seq", 0)),
        ("41", FromPos("seq", 41)),
        ("-20", FromPos("last", 20)),
        ("@-15m", FromPos("time", NOW - 900_000)),
        ("@2025-10-09T08:53:20Z", FromPos("time", 1_759_999_999_999 + 1 - 600_000 * 0)),
    ],
)
def test_parse_from(text: str, expected: FromPos) -> None:
    got = parse_from(text, NOW)
    if expected.kind == "time" and text.startswith("@2025"):
        assert got.kind == "time"
        assert got.value == int(datetime(2025, 10, 9, 8, 53, 20, tzinfo=UTC).timestamp() * 1000)
    else:
        assert got == expected


@pytest.mark.parametrize("text", ["", "soon", "-x", "@yesterday", "1.5", "--3", "@-5parsecs"])
def test_parse_from_rejects(text: str) -> None:
    with pytest.raises(PositionError):
        parse_from(text, NOW)


def test_parse_until() -> None:
    assert parse_until("head", NOW) == UntilPos("head")
    assert parse_until("100", NOW) == UntilPos("seq", 100)
    assert parse_until("@-1h", NOW) == UntilPos("time", NOW - 3_600_000)
    with pytest.raises(PositionError):
        parse_until("-5", NOW)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("15s", 15_000),
        ("15m", 900_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("2", 2_000),
        ("0.5", 500),
        ("1.5s", 1_500),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "m", "5 parsecs", "-3s", "1h-30m", "s5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(PositionError):
        parse_duration_ms(text)


def test_naive_iso_is_utc() -> None:
    assert parse_time_ms("2026-01-31", NOW) == int(
        datetime(2026, 1, 31, tzinfo=UTC).timestamp() * 1000
    )


@given(st.integers(min_value=0, max_value=2**63))
def test_seq_roundtrip(n: int) -> None:
    pos = parse_from(str(n), NOW)
    assert pos == FromPos("seq", n)
    assert str(pos) == str(n)
    assert resolve_from(pos, 0, 1) == n


@given(
    n=st.integers(min_value=0, max_value=10**9),
    head=st.integers(min_value=0, max_value=10**9),
    gap=st.integers(min_value=0, max_value=10**9),
)
def test_last_n_is_clamped(n: int, head: int, gap: int) -> None:
    earliest = min(head + 1, 1 + gap)
    cursor = resolve_from(parse_from(f"-{n}", NOW), head, earliest)
    assert cursor is not None
    assert earliest - 1 <= cursor <= head  # never below retention: no self-inflicted gap
    assert cursor == max(head - n, earliest - 1, 0)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_end_and_start(head: int, earliest: int) -> None:
    assert resolve_from(FromPos("end"), head, earliest) == head
    assert resolve_from(FromPos("start"), head, earliest) == 0
    assert resolve_from(FromPos("time", 5), head, earliest) is None


@given(st.integers(min_value=0, max_value=10**6))
def test_until_head_is_captured(head: int) -> None:
    assert resolve_until(UntilPos("head"), head) == (head, None)
    assert resolve_until(UntilPos("seq", 7), head) == (7, None)
    assert resolve_until(UntilPos("time", 9), head) == (None, 9)
    assert resolve_until(None, head) == (None, None)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=1000), st.sampled_from(["ms", "s", "m", "h", "d"])
        ),
        min_size=1,
        max_size=4,
    )
)
def test_duration_parts_add_up(parts: list[tuple[int, str]]) -> None:
    unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration_ms(text) == sum(n * unit[u] for n, u in parts)


@given(st.integers(min_value=0, max_value=10**10))
def test_relative_time(ms: int) -> None:
    assert parse_from(f"@-{ms}ms", NOW) == FromPos("time", NOW - ms)


def test_format_duration() -> None:
    assert format_duration(500) == "500 ms"
    assert format_duration(40_000) == "40 s"
    assert format_duration(720_000) == "12 min"
    assert format_duration(3 * 3_600_000) == "3.0 h"
