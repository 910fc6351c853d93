"""The goals table of BENCHMARKS.md (bench/report.py): each of issue 13's goals judged from a results dict."""

from __future__ import annotations

from bench import report


def _results(**over: object) -> dict:
    res: dict = {
        "throughput": [
            {"tool": "logagent", "files": 1, "lines_per_s": 150_000, "cpu_us_per_line": 6.0, "peak_rss_mb": 90.0},
            {"tool": "rsyslog", "files": 1, "lines_per_s": 100_000},
            {"tool": "logagent", "files": 100, "lines_per_s": 140_000, "cpu_us_per_line": 7.0, "peak_rss_mb": 120.0},
            {"tool": "rsyslog", "files": 100, "lines_per_s": 100_000},
        ],
        "transfer": [{"tool": t, "ok": True, "docs": 450_000, "seconds": 450_000 / rate, "docs_per_s": rate}
                     for t, rate in (("logtransfer", 40_000), ("direct bulk", 45_000), ("rsyslog", 30_000))],
        "latency": [{"rate": 1_000, "p99_s": 1.2}, {"rate": 10_000, "p99_s": 1.6},
                    {"rate": 1_000, "p99_s": 0.9, "tuned": {"flush_interval_s": 0.25}}],
        "manyfiles": {"idle": {"cpu_pct": 0.8, "rss_mb": 60.0},
                      "load": {"rate": 10_000, "cpu_us_per_line": 25.0, "peak_rss_mb": 70.0}},
    }
    res.update(over)
    return res


def test_each_goal_of_issue_13_is_judged_from_its_figure() -> None:
    got = {g["goal"]: g["met"] for g in report.goals(_results())}
    assert got == {
        "files → Kafka lines/s ≥ 1.5× rsyslog (1 file)": True,
        "files → Kafka ≤ 5 µs agent CPU per line (1 file)": False,
        "files → Kafka agent peak RSS ≤ 100 MB (1 file)": True,
        "files → Kafka lines/s ≥ 1.5× rsyslog (100 files)": False,
        "files → Kafka agent peak RSS ≤ 100 MB (100 files)": False,
        "Kafka → ES docs/s ≥ 0.8× direct bulk": True,
        "Kafka → ES docs/s ≥ 1.2× rsyslog": True,
        "p99 append→searchable ≤ 1.5 s at 1,000 lines/s (defaults)": True,
        "p99 append→searchable ≤ 1.5 s at 10,000 lines/s (defaults)": False,
        "1,000 files idle ≤ 1% of a core": True,
        "1,000 files at 10,000 lines/s ≤ 20 µs CPU per line": False,
        "agent RSS ≤ 100 MB with 1,000 files (idle and under load)": True,
    }


def test_a_part_not_run_is_not_judged_and_the_table_shows_units() -> None:
    judged = report.goals(_results(transfer=[], throughput=[]))
    kafka_es = [g for g in judged if g["goal"].startswith("Kafka → ES")]
    assert [g["met"] for g in kafka_es] == [None, None]
    table = report.markdown({"goals": judged})
    assert "| Kafka → ES docs/s ≥ 0.8× direct bulk | — | — |" in table
    assert "| 1,000 files idle ≤ 1% of a core | 0.8 % | yes |" in table
    assert "| 1,000 files at 10,000 lines/s ≤ 20 µs CPU per line | 25.0 µs | **no** |" in table


def test_issue_24s_parse_goal_and_the_parse_and_journal_tables() -> None:
    parse = {"lines": 500_000, "ratios": {
        "nginx_combined": {"ratio": 0.73, "plain_lines_per_s": 133_558, "parsed_lines_per_s": 96_977,
                           "plain_cpu_us_per_line": 5.82, "parsed_cpu_us_per_line": 9.16},
        "json": {"ratio": 0.68, "plain_lines_per_s": 127_869, "parsed_lines_per_s": 86_842,
                 "plain_cpu_us_per_line": 6.3, "parsed_cpu_us_per_line": 10.38}}}
    journal = {"entries": 300_000, "runs": [
        {"tool": "logagent journal", "lines_per_s": 29_659, "cpu_s": 15.53, "cpu_us_per_line": 51.77,
         "peak_rss_mb": 61.9},
        {"tool": "rsyslog imjournal", "lines_per_s": 47_059, "cpu_s": 7.16, "cpu_us_per_line": 23.87,
         "peak_rss_mb": 105.1}]}
    res = _results(parse=parse, journal=journal)
    got = {g["goal"]: g["met"] for g in report.goals(res)}
    assert got["parsed lines/s ≥ 0.7× plain (nginx_combined, in logagent)"] is True
    assert got["parsed lines/s ≥ 0.7× plain (json, in logagent)"] is False
    table = report.markdown({"parse": parse, "journal": journal, "goals": report.goals(res)})
    assert "| json | 127,869 | 86,842 | 0.68× | 6.3 | 10.38 | 0.61× |" in table
    assert "| logagent journal | 29,659 | 15.53 | 51.77 | 61.9 | 0.63× |" in table
    assert "| parsed lines/s ≥ 0.7× plain (json, in logagent) | 0.68× | **no** |" in table
