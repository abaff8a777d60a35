"""Report helpers as first written: one of them leaves the S3 object's Body unread."""

from __future__ import annotations

from typing import Any


def report_size(s3: Any, key: str) -> int:
    response = s3.get_object(Bucket="reports", Key=key)
    return int(response["ContentLength"])  # the Body is never read nor closed


def report_header(s3: Any, key: str) -> list[str]:
    body = s3.get_object(Bucket="reports", Key=key)["Body"].read()
    return body.decode().splitlines()[0].split(",")
