"""``topics bench``'s pure parts: the log-linear histogram, the report and the ratios."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topics_cli.bench.histogram import Histogram, bucket_bounds, bucket_index
from topics_cli.bench.report import compare, histogram_lines

values = st.integers(min_value=0, max_value=10**11)  # 0 ns .. 100 s
samples = st.lists(values, min_size=1, max_size=400)
pcts = st.one_of(st.sampled_from([0.0, 50.0, 90.0, 99.0, 99.9, 100.0]), st.floats(0, 100))


def exact(data: list[int], pct: float) -> int:
    """The sample of rank ceil(pct% × n), at least 1: the definition the histogram keeps."""
    ordered = sorted(data)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def filled(data: list[int], precision: int = 8) -> Histogram:
    hist = Histogram(precision)
    hist.record_many(data)
    return hist


@given(values, st.integers(min_value=2, max_value=14))
def test_a_value_lies_in_its_bucket_whose_width_is_bounded(value: int, precision: int) -> None:
    low, high = bucket_bounds(bucket_index(value, precision), precision)
    assert low <= value < high
    if value < 2**precision:
        assert (low, high) == (value, value + 1)  # small values are exact
    else:
        assert (high - low) / low <= 2 ** -(precision - 1)


def test_buckets_are_contiguous_and_ascending() -> None:
    previous_high = 0
    for index in range(5000):
        low, high = bucket_bounds(index)
        assert low == previous_high and high > low
        assert bucket_index(low) == index and bucket_index(high - 1) == index
        previous_high = high


@settings(max_examples=300)
@given(samples, pcts)
def test_percentiles_match_exact_within_the_relative_error(data: list[int], pct: float) -> None:
    hist = filled(data)
    want = exact(data, pct)
    got = hist.percentile(pct)
    assert abs(got - want) <= want * 2**-8 + 0.5
    assert hist.min <= got <= hist.max


@given(samples)
def test_min_max_count_and_mean_are_exact(data: list[int]) -> None:
    hist = filled(data)
    assert (hist.min, hist.max, hist.total, hist.sum) == (
        min(data),
        max(data),
        len(data),
        sum(data),
    )
    assert hist.percentile(100) == max(data)
    assert hist.mean == pytest.approx(sum(data) / len(data))


@settings(max_examples=200)
@given(st.lists(samples, min_size=1, max_size=5), pcts)
def test_merging_equals_recording_everything_in_one(parts: list[list[int]], pct: float) -> None:
    merged = Histogram.merged(filled(part) for part in parts)
    whole = filled([v for part in parts for v in part])
    assert merged.counts == whole.counts
    assert (merged.min, merged.max, merged.total, merged.sum) == (
        whole.min,
        whole.max,
        whole.total,
        whole.sum,
    )
    assert merged.percentile(pct) == whole.percentile(pct)


def test_merged_percentiles_are_not_averages_of_percentiles() -> None:
    fast, slow = filled([1_000_000] * 99), filled([50_000_000])
    merged = Histogram.merged([fast, slow])
    # one slow sample in 100: the p99 of all 100 is a fast one, the max the slow one
    assert merged.percentile(99) == pytest.approx(1_000_000, rel=2**-8)
    assert merged.max == 50_000_000
    average_of_p99 = (fast.percentile(99) + slow.percentile(99)) / 2
    assert merged.percentile(99) != pytest.approx(average_of_p99, rel=0.01)


def test_merging_an_empty_histogram_keeps_min() -> None:
    hist = filled([5, 9])
    hist.merge(Histogram())
    empty = Histogram()
    empty.merge(hist)
    assert (hist.min, empty.min, empty.max, empty.total) == (5, 5, 9, 2)


def test_different_precisions_do_not_merge() -> None:
    with pytest.raises(ValueError, match="precision"):
        Histogram(8).merge(Histogram(10))


@given(samples)
def test_wire_round_trip(data: list[int]) -> None:
    hist = filled(data)
    back = Histogram.from_wire(hist.to_wire())
    assert back.counts == hist.counts
    assert (back.min, back.max, back.total, back.sum) == (hist.min, hist.max, hist.total, hist.sum)


def test_wire_with_counts_that_do_not_add_up_is_refused() -> None:
    wire = filled([1, 2, 3]).to_wire()
    wire["count"] = 4
    with pytest.raises(ValueError, match="add up"):
        Histogram.from_wire(wire)


def test_empty_and_bad_input() -> None:
    assert Histogram().percentile(99) == 0
    with pytest.raises(ValueError):
        Histogram().record(-1)
    with pytest.raises(ValueError):
        Histogram().percentile(101)
    with pytest.raises(ValueError):
        Histogram(1)


def test_histogram_lines_account_for_every_sample() -> None:
    rng = random.Random(7)
    data = [int(rng.lognormvariate(14, 1)) for _ in range(5000)] + [0, 3]
    lines = histogram_lines(filled(data), rows=8, width=20)
    assert 2 <= len(lines) <= 8
    assert sum(int(line.split()[-2].replace(",", "")) for line in lines) == len(data)
    assert any("█" * 20 in line for line in lines)  # the fullest band fills the width
    assert histogram_lines(Histogram()) == ["(no samples)"]


def _row(name: str, p50: float, throughput: float) -> dict[str, object]:
    latency = {"p50": p50, "p90": p50 * 2, "p99": p50 * 3, "p99.9": p50 * 4, "max": p50 * 5}
    return {"name": name, "latency_ms": latency, "throughput": throughput}


def test_compare_divides_this_run_by_the_earlier_one() -> None:
    now = {"results": [_row("write", 1.0, 3000.0), _row("queue", 2.0, 10.0)]}
    then = {"url": "http://up", "results": [_row("write", 0.5, 1000.0), _row("router", 1, 1)]}
    result = compare(now, then)
    assert result["against"] == "http://up"
    assert result["ratios"] == {
        "write": {"p50": 2.0, "p90": 2.0, "p99": 2.0, "p99.9": 2.0, "max": 2.0, "throughput": 3.0}
    }


def test_compare_leaves_a_zero_earlier_figure_without_a_ratio() -> None:
    result = compare({"results": [_row("write", 1.0, 5.0)]}, {"results": [_row("write", 0, 0)]})
    assert set(result["ratios"]["write"].values()) == {None}
