"""Prometheus metrics of the server, named like vLLM's (`puyu:` instead of `vllm:`).

Each app has its own registry, so several servers (tests) can live in one process. Engine gauges
(queue, running, KV blocks) are read from `engine.stats()` at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)


class _EngineCollector(Collector):
    def __init__(self, stats: Callable[[], Any | None]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.stats()
        if stats is None:
            return
        gauges = [
            ("puyu:num_requests_waiting", "Requests waiting to be scheduled.", stats.num_waiting),
            ("puyu:num_requests_running", "Requests running in the engine.", stats.num_running),
            ("puyu:kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1).", stats.kv_usage),
            ("puyu:kv_blocks_used", "KV-cache blocks in use.", stats.kv_blocks_used),
            ("puyu:kv_blocks_total", "KV-cache blocks in all.", stats.kv_blocks_total),
            ("puyu:num_preemptions_total", "Preemptions so far.", stats.num_preempted_total),
            (
                "puyu:prefix_cache_hit_rate",
                "Prompt tokens served from the prefix cache (0..1).",
                stats.prefix_cache_hit_rate,
            ),
        ]
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=float(value))


class ServerMetrics:
    """The server's counters and histograms.

    Args:
        stats: returns the engine's `EngineStats`, or None while the model loads.
    """

    def __init__(self, stats: Callable[[], Any | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "puyu:http_requests", "API requests by endpoint and status.", ["endpoint", "status"], registry=self.registry
        )
        self.prompt_tokens = Counter("puyu:prompt_tokens", "Prompt tokens processed.", registry=self.registry)
        self.generation_tokens = Counter("puyu:generation_tokens", "Tokens generated.", registry=self.registry)
        self.finished = Counter(
            "puyu:request_success",
            "Finished engine requests by finish reason.",
            ["finish_reason"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "puyu:time_to_first_token_seconds", "Time to first token.", buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.itl = Histogram(
            "puyu:inter_token_latency_seconds",
            "Time between output tokens.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.e2e = Histogram(
            "puyu:e2e_request_latency_seconds",
            "Request latency, arrival to last token.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimer:
    """Feeds one engine request's timings and token counts into `ServerMetrics`."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self.start = time.perf_counter()
        self.last: float | None = None
        self.prompt_counted = False

    def on_output(self, output: Any) -> None:
        now = time.perf_counter()
        tokens = len(output.token_ids)
        if tokens:
            if self.last is None:
                self.metrics.ttft.observe(now - self.start)
            else:
                self.metrics.itl.observe((now - self.last) / tokens)
            self.last = now
            self.metrics.generation_tokens.inc(tokens)
        if not self.prompt_counted:
            self.metrics.prompt_tokens.inc(output.num_prompt_tokens)
            self.prompt_counted = True
        if output.finished:
            self.metrics.e2e.observe(now - self.start)
            self.metrics.finished.labels(output.finish_reason or "unknown").inc()
