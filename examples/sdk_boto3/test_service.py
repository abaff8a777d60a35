"""The report helpers as first written; with --leak-check, report_size is caught."""

from __future__ import annotations

from typing import Any

from service import report_header, report_size


def test_report_size(s3: Any) -> None:
    assert report_size(s3, "2026/q3.csv") == 29


def test_report_header(s3: Any) -> None:
    assert report_header(s3, "2026/q3.csv") == ["region", "revenue"]


# --8<-- [start:close]
def test_body_closed(s3: Any) -> None:
    # What AWS documents. botocore's close() drops the socket without returning the
    # connection, but its pools never block: listed as a known SDK behaviour, not failed.
    response = s3.get_object(Bucket="reports", Key="2026/q3.csv")
    response["Body"].close()


def test_body_in_with(s3: Any) -> None:
    with s3.get_object(Bucket="reports", Key="2026/q3.csv")["Body"] as body:
        assert body.read(6) == b"region"
        # --8<-- [end:close]
