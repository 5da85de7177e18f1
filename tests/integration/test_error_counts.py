"""Every error code a client can get is a reason of herald_rejected_requests_total, including the
codes only WebSocket error frames carry (each malformed op also counts as ws_bad_op)."""
import json


from herald_test import unique
from herald_test.metrics import rejected
from herald_test.ws import RawWS


def test_websocket_only_codes_are_counted_under_their_code(server):
    ops = {
        "unknown_op": {"op": "fly"},
        "not_subscribed": {"op": "unsubscribe", "topic": unique("never")},
        "bad_since": {"op": "subscribe", "topic": unique("s"), "since": {"epoch": 5}},
        "bad_json": None,
    }
    before = {code: rejected(server, code) for code in [*ops, "binary_not_supported", "ws_bad_op"]}
    with RawWS(server.port) as ws:
        for code, op in ops.items():
            ws.send_text("{nope" if op is None else json.dumps(op))
            reply = ws.recv_json()
            assert reply["type"] == "error" and reply["code"] == code, reply
        ws.send_frame(0x2, b"\x00\x01")
        reply = ws.recv_json()
        assert reply["code"] == "binary_not_supported", reply
    for code in [*ops, "binary_not_supported"]:
        assert rejected(server, code) == before[code] + 1, code
    assert rejected(server, "ws_bad_op") == before["ws_bad_op"] + len(ops) + 1
