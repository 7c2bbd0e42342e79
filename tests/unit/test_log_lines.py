"""logs.py: a log record is one bounded line, whatever text it carries."""

from __future__ import annotations

import logging

from hostfactory_aws import logs


def test_one_line_escapes_control_characters_and_cuts() -> None:
    assert logs.one_line("a\nb\rc\td\x00e\x7f") == "a\\nb\\rc\\td\\x00e\\x7f"
    cut = logs.one_line("x" * 10_000, limit=100)
    assert cut.startswith("x" * 100) and cut.endswith("[9900 more characters]")


def test_formatter_keeps_a_record_on_one_line_and_indents_tracebacks() -> None:
    fmt = logs._formatter()
    rec = logging.LogRecord("n", logging.ERROR, __file__, 1, "id %s", ("r\n2026 FORGED",), None)
    assert "\n" not in fmt.format(rec)
    try:
        raise ValueError("bad\nFORGED")
    except ValueError:
        import sys

        rec = logging.LogRecord("n", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    lines = fmt.format(rec).splitlines()
    assert all(line.startswith("    | ") for line in lines[1:])
