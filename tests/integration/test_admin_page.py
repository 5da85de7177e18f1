"""The admin page (issue 17 item 2, docs/operations.md "Admin page"): its auth rules with plain
HTTP (requests): the login form without a session, 401 and the form again for a wrong key, the
session cookie's attributes, /admin/stats refused without a session or API key and with a forged
or expired cookie, a state-changing call on the cookie refused without its CSRF header, and
everything 404 when admin.enabled is off; then the page itself in headless Chromium
(tests/client/admin_page.test.mjs), which saves docs/images/admin.png."""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from herald_test.metrics import metric_sum
from herald_test.tls import make_test_certs
from herald_testlib import herald_bin

KEY = "admin-page-test-key-" + "k" * 20
CLIENT_TESTS = Path(__file__).resolve().parents[1] / "client"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "admin.png"


def config(enabled=True, ttl="1m"):
    return {"auth": {"publish_keys": [KEY]}, "admin": {"enabled": enabled, "session_ttl": ttl},
            "history": {"size": 100}, "presence": {"patterns": ["demo:*"]}}


def login(srv, key=KEY):
    return requests.post(srv.url("/admin/login"), data={"key": key}, allow_redirects=False,
                         timeout=5)


def rejected(srv, reason):
    return metric_sum(requests.get(srv.url("/metrics"), timeout=5).text,
                      "herald_rejected_requests_total", reason=reason) or 0


def test_login_and_session_rules(herald_factory, tmp_path):
    sink = tmp_path / "audit.jsonl"
    srv = herald_factory({**config(), "audit": {"sink": str(sink)}})
    # No session: the form (no figures, no CSRF token); the stats refused.
    r = requests.get(srv.url("/admin"), timeout=5)
    assert r.status_code == 200 and 'action="/admin/login"' in r.text
    assert "herald-csrf" not in r.text
    assert r.headers["Cache-Control"] == "no-store"
    r = requests.get(srv.url("/admin/stats"), timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"

    # A wrong key: 401 and the form again, counted.
    before = rejected(srv, "unauthorized")
    r = login(srv, "wrong-" + "w" * 30)
    assert r.status_code == 401 and 'action="/admin/login"' in r.text and "Wrong API key" in r.text
    assert "Set-Cookie" not in r.headers
    assert rejected(srv, "unauthorized") == before + 1
    assert login(srv, "").status_code == 401

    # The key: 303 to /admin with the session cookie.
    r = login(srv)
    assert r.status_code == 303 and r.headers["Location"] == "/admin"
    set_cookie = r.headers["Set-Cookie"]
    assert set_cookie.startswith("herald-admin=v1.")
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=60"):
        assert attr in set_cookie, set_cookie
    assert "Secure" not in set_cookie  # plain HTTP here; TLS adds it
    session = r.cookies["herald-admin"]
    jar = {"herald-admin": session}

    page = requests.get(srv.url("/admin"), cookies=jar, timeout=5)
    m = re.search(r'name="herald-csrf" content="([0-9a-f]{64})"', page.text)
    assert page.status_code == 200 and m, page.text[:300]
    csrf = m.group(1)
    stats = requests.get(srv.url("/admin/stats"), cookies=jar, timeout=5)
    assert stats.status_code == 200, stats.text
    s = stats.json()
    assert set(s["connections"]) == {"http", "ws", "sse", "poll"}
    assert s["readiness"] == {"status": 200, "body": {"status": "ready"}}
    assert len(s["workers"]) == 2
    # The API key works as well as the cookie.
    assert requests.get(srv.url("/admin/stats"), timeout=5,
                        headers={"Authorization": f"Bearer {KEY}"}).status_code == 200

    # Forged (signature changed) and expired-looking (expiry changed, old signature) cookies.
    body, sig = session.rsplit(".", 1)
    forged = body + "." + ("0" if sig[0] != "0" else "1") + sig[1:]
    stretched = "v1." + str(int(body[3:]) + 3600) + "." + sig
    for bad in (forged, stretched, "v1.1.00", "nonsense"):
        r = requests.get(srv.url("/admin/stats"), cookies={"herald-admin": bad}, timeout=5)
        assert r.status_code == 401, (bad, r.status_code, r.text)
        r = requests.get(srv.url("/admin"), cookies={"herald-admin": bad}, timeout=5)
        assert "herald-csrf" not in r.text

    # State-changing calls on the cookie need the CSRF header, and the right one.
    pub = lambda headers: requests.post(srv.url("/publish/demo:x"), data=b'{"a":1}',  # noqa: E731
                                        cookies=jar, timeout=5,
                                        headers={"Content-Type": "application/json", **headers})
    r = pub({})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert pub({"X-Herald-CSRF": "0" * 64}).status_code == 403
    assert pub({"X-Herald-CSRF": csrf}).status_code == 200
    r = requests.post(srv.url("/admin/disconnect"), json={"user": "nobody"}, cookies=jar,
                      timeout=5)
    assert r.status_code == 403
    r = requests.post(srv.url("/admin/disconnect"), json={"user": "nobody"}, cookies=jar,
                      timeout=5, headers={"X-Herald-CSRF": csrf})
    assert r.status_code == 200 and r.json()["disconnected"] == 0
    # Streams on the cookie are refused without the token (a foreign page could start them).
    r = requests.get(srv.url("/sse?topic=demo:x"), cookies=jar, timeout=5, stream=True)
    assert r.status_code == 403, r.status_code
    r.close()
    r = requests.get(srv.url("/poll?topic=demo:x"), cookies=jar, timeout=5)
    assert r.status_code == 403, r.status_code
    # Reads on the cookie need no token: history and presence.
    r = requests.get(srv.url("/history/demo:x"), cookies=jar, timeout=5)
    assert r.status_code == 200 and '"a":1' in r.text.replace(" ", "")
    assert requests.get(srv.url("/presence/demo:x/count"), cookies=jar, timeout=5).status_code == 200

    # The audit log: both failed logins, the good one, the disconnect on the session.
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(x) for x in sink.read_text().splitlines()] if sink.exists() else []
        failures = [e for e in lines if e["event"] == "auth_failure" and e["path"] == "/admin/login"]
        actions = [(e["action"], e["by"]) for e in lines if e["event"] == "admin"]
        if (len(failures) == 2 and ("login", "key#0") in actions and ("disconnect", "session") in actions) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(failures) == 2 and ("login", "key#0") in actions, lines
    assert ("disconnect", "session") in actions, lines
    assert KEY not in sink.read_text()


def test_cookie_is_secure_under_tls(herald_factory, tmp_path):
    certs = make_test_certs(str(tmp_path))
    srv = herald_factory({**config(), "tls": {"cert": certs["cert"], "key": certs["key"]}})
    r = requests.post(f"https://localhost:{srv.port}/admin/login", data={"key": KEY},
                      allow_redirects=False, timeout=5, verify=certs["cafile"])
    assert r.status_code == 303
    assert "; Secure" in r.headers["Set-Cookie"], r.headers["Set-Cookie"]


def test_expired_session_is_refused(herald_factory):
    """A session signed by this process but past its expiry is refused. The shortest ttl is one
    minute, so the test makes a session of another (earlier) process instead: its signature does
    not verify either, which is the restart case."""
    a = herald_factory(config())
    b = herald_factory(config())
    session = login(a).cookies["herald-admin"]
    assert requests.get(a.url("/admin/stats"), cookies={"herald-admin": session},
                        timeout=5).status_code == 200
    r = requests.get(b.url("/admin/stats"), cookies={"herald-admin": session}, timeout=5)
    assert r.status_code == 401


def test_admin_off_is_404(herald_factory):
    srv = herald_factory(config(enabled=False))
    for method, path in (("GET", "/admin"), ("POST", "/admin/login"), ("GET", "/admin/stats")):
        r = requests.request(method, srv.url(path), data={"key": KEY}, timeout=5,
                             headers={"Authorization": f"Bearer {KEY}"}, allow_redirects=False)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)


@pytest.mark.release_only  # the browser's side; the page's requests are tested above
def test_admin_page_in_chromium(herald_factory, tmp_path):
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists() or not shutil.which("node"):
        pytest.fail(f"{chromium} and node are needed (scripts/install-deps.sh)")
    srv = herald_factory(config())
    # The screenshot in docs/ is refreshed only on request (HERALD_UPDATE_SCREENSHOT=1), so that
    # `make test` leaves the tree as it found it; otherwise it is taken into the test's directory.
    shot = SCREENSHOT if os.environ.get("HERALD_UPDATE_SCREENSHOT") == "1" else tmp_path / "admin.png"
    env = dict(os.environ, HERALD_URL=srv.url("").rstrip("/"), HERALD_KEY=KEY,
               ADMIN_SCREENSHOT=str(shot))
    try:
        p = subprocess.run(["node", "--test", "--test-reporter=spec", str(CLIENT_TESTS / "admin_page.test.mjs")],
                           cwd=str(CLIENT_TESTS), env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:  # the steps reached say where it stopped
        pytest.fail(f"admin_page.test.mjs hung:\n{e.stdout}\n{e.stderr}")
    print(p.stdout[-4000:])
    assert p.returncode == 0, f"admin_page.test.mjs failed:\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    assert shot.stat().st_mtime > time.time() - 120 and shot.stat().st_size > 10_000


def test_stats_name_the_busiest_topics(herald_factory):
    """/admin/stats: the topic published to most since the last poll leads `by_rate`, the one
    with most subscribers leads `by_subscribers` (rates are per topic's owner, one count per
    message, diffed between two polls)."""
    from herald_test import unique, wait_until
    from herald_test.sse import SSEClient
    srv = herald_factory(config())
    hot, crowded = "demo:" + unique("hot"), "demo:" + unique("crowded")
    auth = {"Authorization": f"Bearer {KEY}"}

    def stats():
        r = requests.get(srv.url("/admin/stats"), headers=auth, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["busiest"]

    with SSEClient(srv.url(f"/sse?topic={hot}"), headers=auth) as a, \
            SSEClient(srv.url(f"/sse?topic={crowded}"), headers=auth) as b, \
            SSEClient(srv.url(f"/sse?topic={crowded}"), headers=auth) as c:
        for s in (a, b, c):
            s.wait_ready()
        stats()  # the previous poll the next one diffs against
        with requests.Session() as s:
            for i in range(40):
                assert s.post(srv.url(f"/publish/{hot}"), data=str(i), headers=auth,
                              timeout=5).status_code == 200
            assert s.post(srv.url(f"/publish/{crowded}"), data="x", headers=auth,
                          timeout=5).status_code == 200
        # Each topic's owner counts a message before it hands it on (shard::dispatch): once
        # every stream has its messages, the next poll sees all of them. (A fixed sleep here
        # could end before a loaded machine's owner had counted the last.)
        wait_until(lambda: (len(a.events_so_far()), len(b.events_so_far()),
                            len(c.events_so_far())) == (40, 1, 1), 20, what="every message delivered")
        busy = stats()
    assert busy["by_rate"][0]["topic"] == hot, busy
    assert busy["by_rate"][0]["rate"] > busy["by_rate"][1]["rate"] > 0, busy
    assert busy["by_subscribers"][0] == {**busy["by_subscribers"][0], "topic": crowded,
                                         "subscribers": 2}, busy
    assert busy["topics"] >= 2 and busy["scanned"] == busy["topics"], busy
