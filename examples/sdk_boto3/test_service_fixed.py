"""The fixed helpers: every test passes with --leak-check."""

from __future__ import annotations

from typing import Any

from service_fixed import report_header, report_size


def test_report_size(s3: Any) -> None:
    assert report_size(s3, "2026/q3.csv") == 29


def test_report_header(s3: Any) -> None:
    assert report_header(s3, "2026/q3.csv") == ["region", "revenue"]
