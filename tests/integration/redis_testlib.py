"""Kept for test files that import from here: the helpers live in the herald_test package
(redis-server in herald_test.redis, the threaded subscribers in herald_test.sse / herald_test.ws)."""
from herald_test import HOST, free_port, wait_count
from herald_test.redis import (RedisServer, after, check_same_sequence, close_all, redis_config,
                               subscribers, two_instances, wait_after, warm_up)
from herald_test.server import wait_ready
from herald_test.sse import SSEClient, SSECollector
from herald_test.ws import WSCollector, ws_connect

__all__ = [
    "after", "check_same_sequence", "close_all", "free_port", "HOST", "redis_config", "RedisServer",
    "SSEClient", "SSECollector", "subscribers", "two_instances", "wait_after", "wait_count",
    "wait_ready", "warm_up", "ws_connect", "WSCollector",
]
