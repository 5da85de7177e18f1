"""Publish numbered text messages to herald flat out over one keep-alive HTTP/1.1 connection.

usage: publisher.py PORT TOPIC COUNT [START [SIZE]]

Message i (START <= i < START+COUNT) has the body str(i), or with SIZE, str(i) + " " padded with
"x" to SIZE bytes. Every answer must be 200 with JSON whose
offsets grow by one; the last stdout line is a JSON summary. Bounded: COUNT requests, 60 s per
request at most.
"""
import http.client
import json
import sys
import time


def main():
    port, topic, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    start = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    size = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    first = last = None
    t0 = time.monotonic()
    reconnects = 0
    for i in range(start, start + count):
        body = (str(i) + " ").ljust(size, "x").encode() if size else str(i).encode()
        for attempt in range(2):
            try:
                conn.request("POST", f"/publish/{topic}", body=body,
                             headers={"Content-Type": "text/plain"})
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, ConnectionError) as e:
                # the server may close a keep-alive connection; reconnect once, but never resend
                # a request it may have processed (that would double a message)
                if attempt or not isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError)):
                    raise
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                reconnects += 1
        if resp.status != 200:
            print(f"message {i}: status {resp.status} {data[:200]!r}", file=sys.stderr)
            sys.exit(1)
        off = json.loads(data)["offset"]
        if last is not None and off != last + 1:
            print(f"message {i}: offset {off} after {last}", file=sys.stderr)
            sys.exit(1)
        if first is None:
            first = off
        last = off
    print(json.dumps({"first": first, "last": last, "count": count, "reconnects": reconnects,
                      "seconds": round(time.monotonic() - t0, 3)}))


if __name__ == "__main__":
    main()
