"""GET /poll with several topics (docs/protocol.md, "Long-polling"): one held request for all of
them, answered {"topics": [...]} with one answer per topic in the URL's order as soon as any has
something; `since` is one cursor per topic joined by ','. The JavaScript client's long-polling
holds one request for every topic with it (a browser has six HTTP/1.1 connections per host)."""
import threading
import time

import pytest
import requests

from herald_test import unique
from herald_test.http import error_of
from herald_test.metrics import connections, wait_connections


@pytest.fixture(scope="module")
def herald_config():
    # No test here waits for poll.timeout: 5s tells a poll that answered at once (bound 2.5 s,
    # beyond a loaded machine's scheduling) from one that waited.
    return {"poll": {"timeout": "5s"}, "history": {"size": 100}}


def pub(server, topic, data):
    r = requests.post(server.url(f"/publish/{topic}"), data=data, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def top(server, topic):
    j = requests.get(server.url(f"/history/{topic}"), params={"limit": 0}, timeout=10).json()
    return f"{j['epoch']}:{j['offset']}"


def test_one_poll_for_several_topics_answers_when_any_has_a_message(server):
    a, b, c = unique("pa"), unique("pb"), unique("pc")
    pub(server, a, "a1")
    since = ",".join(top(server, t) for t in (a, b, c))
    result = {}

    def poll():
        result["r"] = requests.get(server.url("/poll"), timeout=10,
                                   params=[("topic", a), ("topic", b), ("topic", c),
                                           ("since", since)])

    polls = connections(server, "poll")
    t = threading.Thread(target=poll)
    t.start()
    wait_connections(server, "poll", polls + 1)
    pub(server, b, "b1")
    t.join(10)
    r = result["r"]
    assert r.status_code == 200, r.text
    answers = r.json()["topics"]
    assert [x["topic"] for x in answers] == [a, b, c]
    assert [x["messages"] for x in answers[::2]] == [[], []], answers
    assert [(m["offset"], m["data"]) for m in answers[1]["messages"]] == [(1, "b1")]
    assert all(x["recovered"] is True for x in answers), answers
    cursors = [x["cursor"] for x in answers]
    assert cursors[0] == since.split(",")[0] and cursors[1].endswith(":1"), cursors

    # The next poll resumes every topic from its cursor: what came meanwhile answers at once.
    pub(server, a, "a2")
    pub(server, c, "c1")
    t0 = time.monotonic()
    r = requests.get(server.url("/poll"), timeout=10,
                     params=[("topic", a), ("topic", b), ("topic", c), ("since", ",".join(cursors))])
    assert time.monotonic() - t0 < 2.5, "poll.timeout is 5s: it waited"
    answers = r.json()["topics"]
    got = {x["topic"]: [m["data"] for m in x["messages"]] for x in answers}
    assert got == {a: ["a2"], b: [], c: ["c1"]}, answers


def test_one_topic_keeps_the_single_answer(server):
    a = unique("p1")
    pub(server, a, "x")
    r = requests.get(server.url("/poll"), params={"topic": a, "since": top(server, a).replace(":1", ":0")},
                     timeout=10)
    assert r.json()["topic"] == a and "topics" not in r.json(), r.text


def test_a_failed_resume_of_one_topic_answers_at_once_with_its_reset(server):
    a, b = unique("pr-a"), unique("pr-b")
    pub(server, a, "a1")
    pub(server, b, "b1")
    good = top(server, b)
    t0 = time.monotonic()
    r = requests.get(server.url("/poll"), timeout=10,
                     params=[("topic", a), ("topic", b), ("since", f"zzzzzzzz:1,{good}")])
    assert time.monotonic() - t0 < 2.5, "poll.timeout is 5s: it waited"
    ra, rb = r.json()["topics"]
    assert ra["recovered"] is False and ra["reason"] == "epoch changed", ra
    assert ra["cursor"] == top(server, a) and ra["messages"] == [], ra
    assert rb["recovered"] is True and rb["cursor"] == good, rb


@pytest.mark.parametrize("since", ["e:1", "e:1,e:2,e:3", "e:1,,", "e:1,x"])
def test_since_needs_one_cursor_per_topic(server, since):
    r = requests.get(server.url("/poll"), timeout=10,
                     params=[("topic", unique("ps-a")), ("topic", unique("ps-b")), ("since", since)])
    assert r.status_code == 400 and error_of(r)[0] == "bad_cursor", r.text
