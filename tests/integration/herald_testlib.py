"""Kept for test files that import from here: the helpers live in the herald_test package (one
module per job; see herald_test/__init__.py). New tests import from herald_test directly."""
from herald_test import EPOCH_RE, HERE, HOST, REPO_ROOT, unique, wait_until
from herald_test.http import (CurlResult, assert_error, curl, curl_publish, error_of,
                              finish_publisher, publish, start_publisher)
from herald_test.metrics import METRICS, metric_sum, parse_metrics
from herald_test.server import (LISTEN_RE, LIVE_SERVERS, TEST_DEFAULTS, Herald,
                                deep_merge, herald_bin, to_yaml)
from herald_test.sse import SSEBlock, SSEClient
from herald_test.ws import (WS_GUID, RawWS, ws_connect, ws_op, ws_op_collect,
                            ws_recv_json)

__all__ = [
    "assert_error", "curl", "curl_publish", "CurlResult", "deep_merge", "EPOCH_RE", "error_of",
    "finish_publisher", "Herald", "herald_bin", "HERE", "HOST", "LISTEN_RE", "LIVE_SERVERS",
    "metric_sum", "METRICS", "parse_metrics", "publish", "RawWS", "REPO_ROOT", "SSEBlock",
    "SSEClient", "start_publisher", "TEST_DEFAULTS", "to_yaml", "unique", "wait_until",
    "ws_connect", "WS_GUID", "ws_op", "ws_op_collect", "ws_recv_json",
]
