"""bench/parse_bench.py's run order and ratios (pure logic; the runs themselves need a stack)."""

from __future__ import annotations

import pytest

from bench.parse_bench import order, summarize


def test_order_is_abba_with_the_baseline_beside_each_parsed_run() -> None:
    assert order(1, False) == ["plain", "parsed"]
    assert order(2, False) == ["plain", "parsed", "parsed", "plain"]
    assert order(3, False) == ["plain", "parsed", "parsed", "plain", "plain", "parsed"]
    assert order(2, True) == ["plain", "before", "parsed", "parsed", "before", "plain"]


def _run(variant: str, pair: int, lines: int, seconds: float, cpu_s: float, ok: bool = True) -> dict:
    return {"variant": variant, "pair": pair, "lines": lines, "seconds": seconds, "cpu_s": cpu_s, "ok": ok,
            "lines_per_s": round(lines / seconds) if ok else None}


def test_summarize_sums_each_variant_so_a_drift_weighs_on_both() -> None:
    # the machine slows down over the runs (10 s, 14 s, 15 s, 11 s): per pair 0.71 and 0.73, summed 0.72
    runs = [_run("plain", 0, 100, 10.0, 0.5), _run("parsed", 0, 100, 14.0, 0.8),
            _run("parsed", 1, 100, 15.0, 0.9), _run("plain", 1, 100, 11.0, 0.6)]
    r = summarize(runs)
    assert r is not None
    assert r["plain_lines_per_s"] == round(200 / 21.0) and r["parsed_lines_per_s"] == round(200 / 29.0)
    assert r["ratio"] == round(round(200 / 29.0) / round(200 / 21.0), 2)
    assert r["plain_cpu_us_per_line"] == pytest.approx(1.1 / 200 * 1e6)
    assert r["parsed_cpu_us_per_line"] == pytest.approx(1.7 / 200 * 1e6)
    assert r["pair_ratios"] == [round(7 / 10, 3), round(7 / 9, 3)]
    assert r["met"] is (r["ratio"] >= 0.7) and "before_ratio" not in r


def test_summarize_leaves_failed_runs_out_and_needs_both_variants() -> None:
    runs = [_run("plain", 0, 100, 10.0, 0.5), _run("parsed", 0, 100, 12.5, 0.8),
            _run("parsed", 1, 100, 99.0, 9.9, ok=False), _run("plain", 1, 100, 10.0, 0.5)]
    r = summarize(runs)
    assert r is not None and r["ratio"] == 0.8 and r["runs_per_variant"] == {"plain": 2, "parsed": 1}
    assert r["pair_ratios"] == [0.8, None]
    assert summarize([_run("plain", 0, 100, 10.0, 0.5), _run("parsed", 0, 100, 1.0, 0.1, ok=False)]) is None


def test_summarize_reports_the_baseline_beside_the_parsed_runs() -> None:
    runs = [_run("plain", 0, 100, 10.0, 0.5), _run("before", 0, 100, 20.0, 1.0), _run("parsed", 0, 100, 12.5, 0.8)]
    r = summarize(runs)
    assert r is not None and r["ratio"] == 0.8 and r["before_ratio"] == 0.5 and r["before_pair_ratios"] == [0.5]
