"""Leaks through SDKs, each against a real local server, each report at the user's line.

The SDK projects are the ones in ``examples/`` (their servers, clients and tests), run in a
subprocess as a reader runs them, with a few more tests added where a case needs proving
here; the text checked is what users see. ``leak_check_library_packages`` is checked with
a small SDK of the test's own.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from pytest_connleak._core.sdks import SDK_PACKAGES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

HEADLINE = "E   ConnectionLeakError: 1 connection leaked by {name} (still leased at teardown)"
SITE = "E     http://127.0.0.1:* — leased at {where}"
DROPPED = (
    "E     the response was dropped without being closed; garbage collection closed its "
    "socket, but the pool never got the connection back; "
)
BOTO_HINT = (
    f"{DROPPED}read the Body to the end (response['Body'].read()), or close it "
    "(response['Body'].close(), or `with response['Body']:`)"
)
KNOWN_BOTO = (
    "(known SDK behaviour: botocore's StreamingBody.close() closes the socket without "
    "returning the connection (botocore issue 1370); its pools never block)"
)
OPENAI_HINT = (
    "E     iterate the stream to the end, or close it (stream.close(), or "
    "`with client.chat.completions.create(..., stream=True) as stream:`)"
)
DOCKER_HINT = (
    f"{DROPPED}consume the generator that stream=True returned to its end (docker's "
    "documentation asks for it), or do not stream"
)


def example(pytester: pytest.Pytester, name: str) -> pytest.Pytester:
    """The example project *name*, copied into pytester's directory."""
    shutil.copytree(
        EXAMPLES / name,
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"),
    )
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A subprocess: the SDKs and their servers stay out of this process's sys.modules.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--leak-check", *args)


# -- boto3, against moto's S3 server ---------------------------------------------------------


def test_boto3_unread_body_is_a_leak_at_the_user_line_and_close_is_known(
    pytester: pytest.Pytester,
) -> None:
    example(pytester, "sdk_boto3")
    result = run(pytester, "test_service.py")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format(name="test_report_size"),
            SITE.format(where="service.py:9 in report_size"),
            BOTO_HINT,
        ]
    )
    # Body.close() and `with` do not fail their tests; the summary lists them.
    result.stdout.fnmatch_lines(
        [
            "*= connection leaks =*",
            f"test_service.py::test_body_closed: 1 connection leaked {KNOWN_BOTO}",
            "    http://127.0.0.1:* — leased at test_service.py:22 in test_body_closed",
            f"test_service.py::test_body_in_with: 1 connection leaked {KNOWN_BOTO}",
            "    http://127.0.0.1:* — leased at test_service.py:27 in test_body_in_with",
            "test_service.py::test_report_size: 1 connection leaked",
            "    http://127.0.0.1:* — leased at service.py:9 in report_size",
        ]
    )
    result.stdout.no_fnmatch_line("*leased at *botocore*")


def test_boto3_body_dropped_after_a_partial_read_is_a_leak(pytester: pytest.Pytester) -> None:
    example(pytester, "sdk_boto3")
    pytester.makepyfile(
        test_partial="""
        import boto3

        def test_partial(s3):
            body = s3.get_object(Bucket="reports", Key="2026/q3.csv")["Body"]
            assert body.read(6) == b"region"

        def test_resource_api(s3_endpoint):
            s3 = boto3.resource("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
            assert s3.Object("reports", "2026/q3.csv").get()["ContentLength"] == 29

        def test_resource_api_read(s3_endpoint):
            s3 = boto3.resource("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
            assert s3.Object("reports", "2026/q3.csv").get()["Body"].read().startswith(b"region")
        """
    )
    result = run(pytester, "test_partial.py")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format(name="test_partial"),
            SITE.format(where="test_partial.py:4 in test_partial"),
            BOTO_HINT,
            # boto3's resource layer is library code too: the site is still the user's.
            HEADLINE.format(name="test_resource_api"),
            SITE.format(where="test_partial.py:10 in test_resource_api"),
            BOTO_HINT,
        ]
    )


def test_no_leaks_block_lets_botocore_close_pass_and_catches_an_unread_body(
    pytester: pytest.Pytester,
) -> None:
    # The plain-Python API judges like the plugin, with the plugin off for the whole run.
    example(pytester, "sdk_boto3")
    pytester.makepyfile(
        test_block="""
        import pytest
        from pytest_connleak import ConnectionLeakError, no_leaks

        def test_closed_body_passes(s3):
            with no_leaks():
                s3.get_object(Bucket="reports", Key="2026/q3.csv")["Body"].close()

        def test_unread_body_raises(s3):
            with pytest.raises(ConnectionLeakError) as caught:
                with no_leaks():
                    response = s3.get_object(Bucket="reports", Key="2026/q3.csv")
            assert len(caught.value.leases) == 1
            assert "leased at test_block.py:11 in test_unread_body_raises" in str(caught.value)
            response["Body"].close()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:connleak", "test_block.py"
    )
    result.assert_outcomes(passed=2)


# -- the OpenAI SDK (httpx2), against a local chat-completions server ------------------------

needs_openai = pytest.mark.skipif(
    importlib.util.find_spec("openai") is None, reason="the openai SDK needs Python 3.11+"
)


@needs_openai
def test_openai_stream_kept_open_is_a_leak_dropped_one_is_not(pytester: pytest.Pytester) -> None:
    example(pytester, "sdk_openai")
    result = run(pytester, "test_service.py")
    # test_first_word drops a stream after its first chunk: CPython frees it, the SDK
    # closes its response, and the pool has the connection back. Not a leak.
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [HEADLINE.format(name="test_ask"), SITE.format(where="service.py:20 in ask"), OPENAI_HINT]
    )
    result.stdout.fnmatch_lines(
        [
            "*= connection leaks =*",
            "test_service.py::test_ask: 1 connection leaked",
            "    http://127.0.0.1:* — leased at service.py:20 in ask",
        ]
    )
    result.stdout.no_fnmatch_line("*test_first_word*leaked*")
    result.stdout.no_fnmatch_line("*leased at *openai*")


@needs_openai
def test_openai_stream_never_iterated_is_a_leak_even_when_dropped(
    pytester: pytest.Pytester,
) -> None:
    # Never iterated, the SDK's generator never starts, so nothing ever closes the
    # response: httpx2's pool counts it active until the client is closed.
    example(pytester, "sdk_openai")
    pytester.makepyfile(
        test_never="""
        def test_never_iterated(client):
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            assert stream.response.status_code == 200

        def test_closed(client):
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            stream.close()
        """
    )
    result = run(pytester, "test_never.py")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format(name="test_never_iterated"),
            SITE.format(where="test_never.py:2 in test_never_iterated"),
            OPENAI_HINT,
        ]
    )


# -- docker (requests, urllib3), against a local Engine API server ---------------------------


def test_docker_stream_not_consumed_is_a_leak_at_the_user_line(pytester: pytest.Pytester) -> None:
    example(pytester, "sdk_docker")
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format(name="test_pull_started"),
            SITE.format(where="service.py:11 in pull_started"),
            DOCKER_HINT,
        ]
    )
    result.stdout.no_fnmatch_line("*leased at *docker/*")


# -- leak_check_library_packages -------------------------------------------------------------

ACME_SDK = """
    import requests

    def fetch(url):
        return requests.get(url, stream=True)
    """
ACME_TEST = """
    import acme_sdk

    def test_fetch(url):
        assert acme_sdk.fetch(url + "/ok").status_code == 200
    """


@pytest.mark.parametrize(
    ("ini", "where"),
    [
        ("", "acme_sdk.py:4 in fetch"),
        ("leak_check_library_packages = acme_sdk", "test_acme.py:4 in test_fetch"),
    ],
    ids=["not-listed", "listed"],
)
def test_library_packages_move_the_site_to_the_caller(
    base_conftest: pytest.Pytester, ini: str, where: str
) -> None:
    base_conftest.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}\n")
    base_conftest.makepyfile(acme_sdk=ACME_SDK, test_acme=ACME_TEST)
    base_conftest.syspathinsert()
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([HEADLINE.format(name="test_fetch"), SITE.format(where=where)])


def test_library_packages_are_forgotten_after_the_run(base_conftest: pytest.Pytester) -> None:
    from pytest_connleak._core.ledger import ledger

    base_conftest.makeini("[pytest]\nleak_check_library_packages = acme_sdk\n")
    base_conftest.makepyfile(acme_sdk=ACME_SDK, test_acme=ACME_TEST)
    base_conftest.syspathinsert()
    base_conftest.runpytest("--leak-check").assert_outcomes(passed=1, errors=1)
    assert "acme_sdk" not in ledger._library_prefixes.values()
    assert "botocore" in SDK_PACKAGES


def test_library_packages_bad_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nleak_check_library_packages = acme-sdk\n")
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest("--leak-check")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: leak_check_library_packages: 'acme-sdk' is not a package name; give "
            "importable names such as my_sdk or company.clients, separated by spaces or newlines"
        ]
    )


def test_sdk_packages_are_never_lease_sites_even_unimported() -> None:
    # The walk learns an SDK's directory without importing it (a suite pays nothing for
    # SDKs it does not use).
    from pytest_connleak._core.ledger import Ledger

    own = Ledger()
    before = set(sys.modules)
    own.add_library(*SDK_PACKAGES)
    assert "botocore" in own._library_prefixes.values()
    assert "docker" in own._library_prefixes.values()
    assert {name for name in SDK_PACKAGES if name in sys.modules} <= before
