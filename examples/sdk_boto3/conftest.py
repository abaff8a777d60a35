"""A real S3 API on 127.0.0.1 (moto's server), and a boto3 client for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REPORT = b"region,revenue\neu,120\nus,340\n"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread: real HTTP, a real boto3 and urllib3 under it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


# --8<-- [start:client]
@pytest.fixture(scope="session")
def s3(s3_endpoint: str) -> Iterator[Any]:
    """One S3 client for the run, with a bucket holding one report."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket="reports")
    client.put_object(Bucket="reports", Key="2026/q3.csv", Body=REPORT)
    yield client
    client.close()
    # --8<-- [end:client]
