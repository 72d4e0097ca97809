"""The request metrics kept as plain integers: what the registry exposes from them when scraped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from license_server import metrics


def _samples(collector: Collector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counts_by_status_and_a_cumulative_latency_histogram_with_le_bounds() -> None:
    requests = metrics._RequestCollector()
    for seconds in (0.0004, 0.0005, 0.0007, 0.003, 20.0):  # 0.0005 sits on a bound: le means <=
        requests.observe("vendor", "GET", "/v1/license", 304, seconds)
    requests.observe("vendor", "GET", "/v1/license", 200, 0.002)
    samples = _samples(requests)
    route = (("app", "vendor"), ("method", "GET"), ("route", "/v1/license"))

    def count(status: str) -> float:
        return samples[("license_server_http_requests_total", tuple(sorted((*route, ("status", status)))))]

    def bucket(le: str) -> float:
        return samples[("license_server_http_request_duration_seconds_bucket", tuple(sorted((*route, ("le", le)))))]

    assert count("304") == 5
    assert count("200") == 1
    assert bucket("0.0005") == 2
    assert bucket("0.001") == 3
    assert bucket("0.0025") == 4
    assert bucket("0.005") == 5
    assert bucket("10.0") == 5
    assert bucket("+Inf") == 6
    assert samples[("license_server_http_request_duration_seconds_count", route)] == 6
    total = samples[("license_server_http_request_duration_seconds_sum", route)]
    assert abs(total - (0.0004 + 0.0005 + 0.0007 + 0.003 + 20.0 + 0.002)) < 1e-9


class _Cache:
    def __init__(self, name: str, hits: int, misses: int) -> None:
        self.name, self.hits, self.misses = name, hits, misses


def test_cache_lookups_are_summed_over_the_live_caches_of_a_name() -> None:
    caches = metrics._CacheCollector()
    first, second, other = _Cache("poll.activations", 3, 1), _Cache("poll.activations", 4, 2), _Cache("billing", 1, 0)
    for cache in (first, second, other):
        caches.watch(cache)
    samples = _samples(caches)
    assert samples[("license_server_cache_lookups_total", (("cache", "poll.activations"), ("result", "hit")))] == 7
    assert samples[("license_server_cache_lookups_total", (("cache", "poll.activations"), ("result", "miss")))] == 3
    assert samples[("license_server_cache_lookups_total", (("cache", "billing"), ("result", "hit")))] == 1
