"""The fix: ask for the size without the body (head_object), or read what you fetch."""

from __future__ import annotations

from typing import Any


def report_size(s3: Any, key: str) -> int:
    return int(s3.head_object(Bucket="reports", Key=key)["ContentLength"])


def report_header(s3: Any, key: str) -> list[str]:
    body = s3.get_object(Bucket="reports", Key=key)["Body"].read()
    return body.decode().splitlines()[0].split(",")
