"""The Prometheus collector, read through prometheus_client's own exposition output.

Each test puts a fresh ``load_balancer`` proxy (a keep-alive server on a new port) in
front of the upstream, so its origin is its own in the process-wide ledger.
"""

from __future__ import annotations

import gc
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import requests
import urllib3
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from pytest_connleak import track
from pytest_connleak._core.ledger import ledger
from pytest_connleak._runtime.alarm import Watchdog
from pytest_connleak._runtime.metrics import METRICS
from pytest_connleak.prometheus import PoolCollector

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def origin(lb_httpserver: HTTPServer, load_balancer: Callable[..., str]) -> str:
    lb_httpserver.expect_request("/ok").respond_with_data("ok")
    return load_balancer(lb_httpserver.url_for("/").rstrip("/"))


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    registry.register(PoolCollector())
    with track(pool_threshold=None):
        yield registry


def scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def samples(registry: CollectorRegistry, origin: str) -> dict[str, float]:
    """``{sample name: value}`` of *origin*'s series, parsed by prometheus_client."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(scrape(registry)):
        for sample in family.samples:
            if sample.labels.get("origin") == origin:
                assert sample.name not in found, f"two series of {sample.name} for {origin}"
                found[sample.name] = sample.value
    return found


def test_the_exposition_of_a_pool_in_use(registry: CollectorRegistry, origin: str) -> None:
    with urllib3.PoolManager(maxsize=3, block=True) as pm:
        held = [pm.request("GET", origin + "/ok", preload_content=False) for _ in range(2)]
        during = samples(registry, origin)
        text = scrape(registry)
        for response in held:
            response.read()
            response.release_conn()
        after = samples(registry, origin)
    assert during == {
        "connleak_pool_leased": 2,
        "connleak_pool_idle": 0,
        "connleak_pool_capacity": 3,
        "connleak_pool_high_water": 2,
        "connleak_pool_leases_total": 2,
        "connleak_pool_waits_total": 0,
        "connleak_pool_leaks_total": 0,
    }
    assert after["connleak_pool_leased"] == 0
    assert after["connleak_pool_idle"] == 2
    labels = f'{{client="urllib3",origin="{origin}"}}'
    for line in (
        "# HELP connleak_pool_leased Connections handed out and not yet returned.",
        "# TYPE connleak_pool_leased gauge",
        f"connleak_pool_leased{labels} 2.0",
        "# TYPE connleak_pool_leases_total counter",
        f"connleak_pool_leases_total{labels} 2.0",
        "# TYPE connleak_pool_high_water gauge",
    ):
        assert line in text.splitlines(), text
    exposed = {m.group(1) for m in re.finditer(r"^# TYPE (\w+) (\w+)$", text, re.M)}
    assert exposed == {name for name, _, _ in METRICS}


def test_waits_are_counted(registry: CollectorRegistry, origin: str) -> None:
    with urllib3.PoolManager(maxsize=1, block=True) as pm:
        held = pm.request("GET", origin + "/ok", preload_content=False)
        pool = pm.connection_from_url(origin)
        with pytest.raises(urllib3.exceptions.EmptyPoolError):
            pool.urlopen("GET", "/ok", pool_timeout=0.01)
        held.read()
        held.release_conn()
    assert samples(registry, origin)["connleak_pool_waits_total"] == 1


def test_pools_that_die_fold_into_their_origin(registry: CollectorRegistry, origin: str) -> None:
    """Fifty short-lived pools: one series per metric, counters that never go back."""
    for _ in range(50):
        requests.get(origin + "/ok").raise_for_status()  # a new pool each call
    gc.collect()
    folded = samples(registry, origin)
    assert folded["connleak_pool_leases_total"] == 50
    assert folded["connleak_pool_high_water"] == 1
    # No pool of this origin is alive: no gauge of the moment, the counters stay.
    assert "connleak_pool_leased" not in folded
    with requests.Session() as session:
        for _ in range(3):
            session.get(origin + "/ok").raise_for_status()
        live = samples(registry, origin)
    assert live["connleak_pool_leases_total"] == 53
    assert live["connleak_pool_leased"] == 0
    assert live["connleak_pool_capacity"] == 10  # requests' default pool size
    series = re.findall(
        rf'^connleak_pool_leases_total\{{[^}}]*origin="{origin}"', scrape(registry), re.M
    )
    assert len(series) == 1


def test_pools_of_one_origin_add_up(registry: CollectorRegistry, origin: str) -> None:
    with urllib3.PoolManager(maxsize=2) as a, urllib3.PoolManager(maxsize=3) as b:
        held = [
            a.request("GET", origin + "/ok", preload_content=False),
            b.request("GET", origin + "/ok", preload_content=False),
            b.request("GET", origin + "/ok", preload_content=False),
        ]
        both = samples(registry, origin)
        for response in held:
            response.read()
            response.release_conn()
    assert both["connleak_pool_leased"] == 3
    assert both["connleak_pool_capacity"] == 5
    assert both["connleak_pool_high_water"] == 2  # the larger of the two pools' marks
    assert both["connleak_pool_leases_total"] == 3


def test_httpx_pools_without_an_idle_count(registry: CollectorRegistry, origin: str) -> None:
    with httpx.Client(limits=httpx.Limits(max_connections=5)) as client:
        with client.stream("GET", origin + "/ok") as response:
            during = samples(registry, origin)
            response.read()
        after = samples(registry, origin)
    assert during["connleak_pool_leased"] == 1
    assert during["connleak_pool_capacity"] == 5
    assert after["connleak_pool_leased"] == 0
    assert after["connleak_pool_leases_total"] == 1
    assert "connleak_pool_idle" not in after  # httpcore does not say: not listed, not 0


def test_leaks_the_alarm_reported_are_counted(registry: CollectorRegistry, origin: str) -> None:
    dog = Watchdog(
        ledger,
        leak_threshold=10.0,
        pool_threshold=None,
        logger=logging.getLogger("tests.prometheus"),
        clock=lambda: time.monotonic() + 11,
    )
    with urllib3.PoolManager(maxsize=2) as pm:
        held = pm.request("GET", origin + "/ok", preload_content=False)
        dog.check()
        assert samples(registry, origin)["connleak_pool_leaks_total"] == 1
        held.read()
        held.release_conn()
        dog.check()  # returned: still one leak reported
    assert samples(registry, origin)["connleak_pool_leaks_total"] == 1


def test_the_documented_alert_rules_use_exposed_metrics() -> None:
    page = (ROOT / "docs" / "how-to" / "production.md").read_text()
    rules = page.split("```yaml", 1)[1].split("```", 1)[0]
    # A valid rules file (yaml comes with mkdocs): every rule has a name and an expression.
    (group,) = yaml.safe_load(rules)["groups"]
    names = [rule["alert"] for rule in group["rules"]]
    assert names == ["ConnectionPoolNearlyFull", "ConnectionLeak", "ConnectionPoolWaits"]
    assert "0.75" in group["rules"][0]["expr"]  # the test run's pool-health threshold
    used = {m for rule in group["rules"] for m in re.findall(r"\bconnleak_\w+", rule["expr"])}
    assert {"connleak_pool_leased", "connleak_pool_capacity", "connleak_pool_leaks_total"} <= used
    assert used <= {name for name, _, _ in METRICS}


def test_the_reference_lists_every_metric_with_its_type() -> None:
    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    rows = re.findall(r"^\| `(connleak_\w+)` \| (\w+) \|", page, re.M)
    assert rows == [(name, kind) for name, kind, _ in METRICS]


def test_the_how_to_shows_the_line_the_example_leases_at() -> None:
    page = (ROOT / "docs" / "how-to" / "production.md").read_text()
    service = (ROOT / "examples" / "production_service" / "service.py").read_text()
    send = next(i for i, line in enumerate(service.splitlines(), 1) if "client.send(" in line)
    shown = set(re.findall(r"at service\.py:(\d+) in fetch_profile", page))
    assert shown == {str(send)}


def how_to_block(reason: str) -> list[str]:
    """The lines of the how-to's block whose ``docs: illustrative`` comment starts so."""
    page = (ROOT / "docs" / "how-to" / "production.md").read_text()
    after = page.split(f"<!-- docs: illustrative: {reason}", 1)[1]
    return after.split("```", 2)[1].splitlines()[1:]


def shape(text: str) -> str:
    """*text* without what differs from run to run: origins, numbers, threads, sites."""
    text = re.sub(r"http://127\.0\.0\.1:\d+", "ORIGIN", text)
    text = re.sub(r"'[^']*'", "'THREAD'", text)
    text = re.sub(r"at \S+:\d+ in \w+", "at FILE:LINE in FUNCTION", text)
    text = re.sub(r"\((?:urllib3|httpcore)\)", "(CLIENT)", text)
    text = re.sub(r'client="\w+"', 'client="CLIENT"', text)
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


def test_the_how_to_shows_the_alarms_and_the_scrape_as_they_are(
    registry: CollectorRegistry, origin: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The how-to's log lines and /metrics sample have the wording of real ones."""
    caplog.set_level(logging.WARNING, "tests.prometheus.how_to")
    dog = Watchdog(
        ledger,
        leak_threshold=0.5,
        pool_threshold=0.75,
        logger=logging.getLogger("tests.prometheus.how_to"),
        clock=lambda: time.monotonic() + 0.6,
    )
    with httpx.Client(limits=httpx.Limits(max_connections=4)) as client:
        held = [client.send(client.build_request("GET", origin + "/ok"), stream=True)]
        held += [client.send(client.build_request("GET", origin + "/ok"), stream=True)]
        held += [client.send(client.build_request("GET", origin + "/ok"), stream=True)]
        dog.check()
        scraped = scrape(registry)
        for response in held:
            response.close()
        dog.check()
    logged = {shape(f"{r.levelname} {r.name}: {r.getMessage()}") for r in caplog.records}
    logged = {line.replace("tests.prometheus.how_to", "pytest_connleak") for line in logged}
    shown = how_to_block("a live service's log") + how_to_block("the returned-connection line")
    assert len(shown) == 5
    for line in shown:
        assert shape(line) in logged, (line, logged)
    real = {shape(line) for line in scraped.splitlines() if origin in line}
    metrics = how_to_block("a scrape of the running example")
    assert len(metrics) == 6
    for line in metrics:
        assert shape(line) in real, (line, real)


def test_registering_twice_is_refused_by_prometheus_client() -> None:
    registry = CollectorRegistry()
    registry.register(PoolCollector())
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(PoolCollector())
    assert PoolCollector.__module__ == "pytest_connleak.prometheus"


def test_without_prometheus_client_the_import_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n    import pytest_connleak.prometheus\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == [
        "pytest_connleak.prometheus needs prometheus_client: pip install prometheus_client "
        "(the 'prometheus' extra of pytest-connleak)"
    ]
