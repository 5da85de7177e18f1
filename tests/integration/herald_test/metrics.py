"""herald's /metrics: the text format parsed into samples, sums by label, and the names."""
from __future__ import annotations

import re

import requests

from herald_test import wait_until

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        labels = {}
        if m.group(2):
            for lm in re.finditer(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[lm.group(1)] = lm.group(2)
        try:
            val = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), labels, val))
    return out


def metric_sum(text: str, name: str, **labels) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None when there is none."""
    vals = [v for n, l, v in parse_metrics(text)
            if n == name and all(l.get(k) == want for k, want in labels.items())]
    return sum(vals) if vals else None


# The names herald exports (docs/protocol.md "Health and metrics"); one place to adjust.
METRICS = {
    "connections": "herald_connections",                      # gauge, label transport=ws|sse|poll
    "published": "herald_messages_published_total",          # counter
    "delivered": "herald_frames_delivered_total",             # counter
    "bytes_out": "herald_bytes_out_total",                    # counter
    "slow_consumers": "herald_slow_consumers_total",          # counter
    "pong_timeouts": "herald_pong_timeouts_total",            # counter
    "rejected": "herald_rejected_requests_total",             # counter, label reason=<error code>
}


def metrics_text(server) -> str:
    r = requests.get(server.url("/metrics"), timeout=10)
    assert r.status_code == 200, f"/metrics -> {r.status_code} {r.text[:200]}"
    return r.text


def rejected(server, reason: str) -> float:
    """herald_rejected_requests_total{reason=...} summed over workers (0 when never counted)."""
    return metric_sum(metrics_text(server), METRICS["rejected"], reason=reason) or 0


def connections(server, transport: str) -> float:
    """herald_connections{transport=...}: open client connections of one transport."""
    return metric_sum(metrics_text(server), METRICS["connections"], transport=transport) or 0


def wait_connections(server, transport: str, at_least: float, timeout: float = 10.0):
    """Until `at_least` connections of `transport` are open: a stream is counted in the same loop
    turn as its subscription is made, so a publish sent after this reaches it (no sleep needed)."""
    wait_until(lambda: connections(server, transport) >= at_least, timeout,
               what=f"{at_least} {transport} connection(s) open at herald")
