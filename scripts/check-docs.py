#!/usr/bin/env python3
"""Doc-truth check: the docs say what the binary does.

- Every key of `herald --print-defaults` and of config/herald.yaml is a row of a key table in
  docs/configuration.md, with the compiled default and, where herald enforces one, its range;
  config/herald.yaml's values are the defaults except lines marked DEVELOPMENT OVERRIDE.
- Every metric name in docs/*.md and README.md exists on a live /metrics (herald started with the
  memory broker and with the redis broker), and every metric /metrics exposes is in
  configuration.md.
- Every error code in docs/protocol.md exists in the code, every code the code can send is in
  protocol.md (HTTP table, and the WebSocket `error` frame list for WebSocket codes), and the
  `herald_rejected_requests_total` row of configuration.md lists every reason /metrics has.

Usage: scripts/check-docs.py [--herald build/herald] [--root DIR] [--promtool]
Prints one line per disagreement (file: what, and what the binary says) and exits 1 if any.
Starts herald on 127.0.0.1 with ports the OS picks; needs PyYAML and requests.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]


def set_root(root: Path) -> None:
    """The tree whose docs, config and sources are checked (a copy, in the check's own test)."""
    global ROOT, DOCS, CONFIG_MD, PROTOCOL_MD, SHIPPED
    ROOT = root.resolve()
    DOCS = ROOT / "docs"
    CONFIG_MD = DOCS / "configuration.md"
    PROTOCOL_MD = DOCS / "protocol.md"
    SHIPPED = ROOT / "config" / "herald.yaml"


set_root(ROOT)
OVERRIDE_MARK = "DEVELOPMENT OVERRIDE"

problems: list[str] = []


def problem(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


# --------------------------------------------------------------------------- values

DURATION = re.compile(r"^(\d+)\s*(ms|s|m|h|d)?$")
SIZE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$")
DUR_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}
SIZE_B = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1000, "MB": 10**6,
          "GB": 10**9, None: 1}


def kind_of(default: str) -> str:
    """How a key's values compare, judged from its printed default."""
    if re.match(r"^\d+(ms|s|m|h|d)$", default):
        return "duration"
    if re.match(r"^\d+(KiB|MiB|GiB)$", default):
        return "size"
    return "value"


def norm(text: str, kind: str):
    """A comparable form of a value written in a doc or printed by herald."""
    t = text.strip().strip("`").strip()
    if kind == "duration" and (m := DURATION.match(t)):
        return ("ms", int(m.group(1)) * DUR_MS[m.group(2)])
    if kind == "size" and (m := SIZE.match(t)):
        return ("bytes", int(m.group(1)) * SIZE_B[m.group(2)])
    try:
        v = yaml.safe_load(t)
    except yaml.YAMLError:
        return ("text", t)
    if isinstance(v, dict):  # `herald:` is a string in a doc, not a map
        v = t

    def flat(x):
        if isinstance(x, list):
            return tuple(flat(i) for i in x)
        if isinstance(x, bool):
            return "true" if x else "false"
        if x is None:
            return ""
        return str(x)
    return flat(v)


def norm_range(text: str, kind_hint: str):
    lo, _, hi = text.partition("..")
    kind = "duration" if DURATION.match(lo.strip()) and re.search(r"[a-z]$", hi.strip()) \
        else "size" if re.search(r"(KiB|MiB|GiB)$", hi.strip()) else kind_hint
    if kind == "value":
        kind = "size" if kind_hint == "size" else "value"
    return norm(lo, kind), norm(hi, kind)


# --------------------------------------------------------------------------- config keys

def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def yaml_lines(text: str) -> dict:
    """key -> (raw value text, comment) for every `key: value` line, nesting by indentation."""
    out, path = {}, []
    for line in text.splitlines():
        m = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):(.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        path = path[:depth] + [m.group(2)]
        rest = m.group(3)
        # The comment starts at the first " #" outside quotes.
        value, comment, quote = rest, "", None
        for i, ch in enumerate(rest):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == "#" and (i == 0 or rest[i - 1] == " "):
                value, comment = rest[:i], rest[i + 1:]
                break
        out[".".join(path)] = (value.strip(), comment.strip())
    return out


def md_tables(path: Path) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table of a file as (header cells, rows of cells)."""
    tables, cur = [], None
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cur is None:
                cur = (cells, [])
                tables.append(cur)
            elif not all(re.match(r"^:?-+:?$", c) for c in cells):
                cur[1].append(cells)
        else:
            cur = None
    return tables


def doc_key_rows() -> dict:
    rows = {}
    for header, body in md_tables(CONFIG_MD):
        if not header or header[0].lower() != "key" or "default" not in [h.lower() for h in header]:
            continue
        di = [h.lower() for h in header].index("default")
        ri = [h.lower() for h in header].index("range") if "range" in [h.lower() for h in header] else None
        for cells in body:
            for key in re.findall(r"`([a-z_][a-z0-9_.]*)`", cells[0]):
                rows[key] = (cells[di] if di < len(cells) else "",
                             cells[ri] if ri is not None and ri < len(cells) else "")
    return rows


def check_config_keys(herald: str) -> None:
    p = subprocess.run([herald, "--print-defaults"], capture_output=True, timeout=20)
    if p.returncode != 0:
        problem("herald --print-defaults", f"exit {p.returncode}: {p.stderr.decode()[:300]}")
        return
    text = p.stdout.decode()
    for key in re.findall(r"^# undescribed key: (\S+)", text, re.M):
        problem("herald --print-defaults", f"key `{key}` is accepted but has no default or range "
                                           "listed (add it to config::describe in src/config/config.cpp)")
    printed = yaml_lines(text)
    defaults = flatten(yaml.safe_load(text))
    ranges = {k: m.group(1) for k, (_, c) in printed.items()
              if (m := re.match(r"range:\s*(\S+)", c))}
    shipped_text = SHIPPED.read_text()
    shipped = flatten(yaml.safe_load(shipped_text))
    shipped_lines = yaml_lines(shipped_text)
    rows = doc_key_rows()

    for key in shipped:
        if key not in defaults:
            problem(rel(SHIPPED), f"key `{key}` is not a key herald --print-defaults knows")
            continue
        raw, comment = shipped_lines.get(key, ("", ""))
        kind = kind_of(printed[key][0])
        if norm(raw, kind) != norm(printed[key][0], kind) and OVERRIDE_MARK not in comment:
            problem(rel(SHIPPED), f"`{key}: {raw}` is not the default ({printed[key][0]}); mark "
                                  f"the line's comment {OVERRIDE_MARK} or use the default")

    for key in sorted(set(defaults) | set(shipped)):
        if key not in printed:
            continue
        default = printed[key][0]
        want_range = ranges.get(key)
        if key not in rows:
            problem(rel(CONFIG_MD), f"key `{key}` is missing from the key tables (default "
                                    f"`{default}`" + (f", range {want_range})" if want_range else ")"))
            continue
        doc_default, doc_range = rows[key]
        kind = kind_of(default)
        tokens = re.findall(r"`([^`]*)`", doc_default) or [doc_default]
        if norm(tokens[0], kind) != norm(default, kind):
            problem(rel(CONFIG_MD), f"`{key}` default is documented as {doc_default!r}, "
                                    f"herald --print-defaults says `{default}`")
        if want_range:
            want = norm_range(want_range, kind)
            found = [norm_range(r, kind) for r in
                     re.findall(r"([0-9][0-9A-Za-z]*\s*\.\.\s*[0-9][0-9A-Za-z]*)", doc_range)]
            if want not in found:
                problem(rel(CONFIG_MD), f"`{key}` range is documented as {doc_range!r}, herald "
                                        f"enforces {want_range}")
    for key in sorted(set(rows) - set(defaults)):
        problem(rel(CONFIG_MD), f"documents key `{key}`, which herald does not accept")


# --------------------------------------------------------------------------- live herald

class Running:
    def __init__(self, herald: str, config: str):
        self.dir = tempfile.mkdtemp(prefix="herald-docs-")
        cfg = Path(self.dir) / "herald.yaml"
        cfg.write_text(config)
        self.log = Path(self.dir) / "herald.log"
        self.proc = subprocess.Popen([herald, "--config", str(cfg), "--listen", "127.0.0.1:0",
                                      "--workers", "1"], stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", self.log.read_bytes())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise RuntimeError(f"herald did not start:\n{self.log.read_text()[-2000:]}")

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def live_metrics(herald: str) -> dict[str, str]:
    """broker -> /metrics text. The redis broker points at a port nothing listens on: its
    metrics exist while Redis is down."""
    out = {}
    with tempfile.TemporaryDirectory():
        for broker, cfg in (("memory", "log:\n  level: info\n"),
                            ("redis", "log:\n  level: info\nbroker: redis\nredis:\n"
                                      "  shards: [\"127.0.0.1:1\"]\n  connect_timeout: 100ms\n")):
            h = Running(herald, cfg)
            try:
                out[broker] = h.metrics()
            finally:
                h.stop()
    return out


def metric_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if m := re.match(r"^# TYPE (\S+) ", line):
            names.add(m.group(1))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def reasons(text: str) -> set[str]:
    return set(re.findall(r'herald_rejected_requests_total\{reason="([a-z_]+)"\}', text))


def check_metrics(texts: dict[str, str]) -> None:
    live = set().union(*(metric_names(t) for t in texts.values()))
    doc_files = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
    for f in doc_files:
        for name in sorted(set(re.findall(r"\bherald_[a-z0-9_]*[a-z0-9]\b", f.read_text()))):
            if name not in live:
                problem(rel(f), f"metric `{name}` is not on /metrics (memory or redis broker)")
    config_text = CONFIG_MD.read_text()
    typed = set()
    for t in texts.values():
        typed |= set(re.findall(r"^# TYPE (\S+) ", t, re.M))
    for name in sorted(typed):
        if not re.search(rf"`{re.escape(name)}`", config_text):
            problem(rel(CONFIG_MD), f"metric `{name}` (on /metrics) is not in the metrics table")


def check_promtool(texts: dict[str, str]) -> None:
    tool = shutil.which("promtool")
    if not tool:
        problem("promtool", "not installed")
        return
    for broker, text in texts.items():
        p = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True,
                           timeout=30)
        out = (p.stdout + p.stderr).decode().strip()
        if p.returncode != 0 or out:
            for line in out.splitlines():
                problem(f"/metrics ({broker} broker)", f"promtool: {line}")


# --------------------------------------------------------------------------- error codes

def code_literals() -> tuple[set[str], set[str]]:
    """(codes written as JSON literals anywhere in src, codes WebSocket error frames carry)."""
    literal, ws = set(), set()
    for f in (ROOT / "src").rglob("*.cpp"):
        text = f.read_text()
        literal |= set(re.findall(r'\\"code\\":\\"([a-z_]+)\\"', text))
    # The WebSocket session and its client ops (ws_ops.cpp).
    ws_src = "".join((ROOT / "src" / "net" / f).read_text()
                     for f in ("ws_session.cpp", "ws_ops.cpp"))
    ws |= set(re.findall(r'\b(?:bad|reply_error)\(\s*(?:\{\}|id)\s*,\s*"([a-z_]+)"', ws_src))
    ws |= set(re.findall(r'\\"code\\":\\"([a-z_]+)\\"', ws_src))
    return literal, ws


def codes_in(text: str) -> set[str]:
    """The backticked codes of a doc passage, leaving out (explanations in parentheses), which
    name fields and headers."""
    while True:
        stripped = re.sub(r"\([^()]*\)", "", text)
        if stripped == text:
            break
        text = stripped
    return set(re.findall(r"`([a-z_]+)`", text))


def protocol_codes() -> tuple[set[str], set[str]]:
    """(codes of the HTTP error table, codes of the WebSocket `error` frame list)."""
    http = set()
    for header, body in md_tables(PROTOCOL_MD):
        if [h.lower() for h in header[:2]] == ["status", "codes"]:
            for cells in body:
                http |= codes_in(cells[1])
    text = PROTOCOL_MD.read_text()
    m = re.search(r"Error codes in `error` frames:(.*?)(?:\n\s*\n)", text, re.S)
    ws = codes_in(m.group(1)) if m else set()
    if not m:
        problem(rel(PROTOCOL_MD), "no paragraph 'Error codes in `error` frames:'")
    if not http:
        problem(rel(PROTOCOL_MD), "no '| status | codes |' table")
    return http, ws


def check_codes(metrics_text: str) -> None:
    reason_set = reasons(metrics_text)
    if not reason_set:
        problem("/metrics", "no herald_rejected_requests_total{reason=...} series")
    literal, ws_codes = code_literals()
    doc_http, doc_ws = protocol_codes()
    # ws_* reasons count close-code failures and malformed ops: they are not error codes.
    sendable = {r for r in reason_set if not r.startswith("ws_")} | literal | ws_codes
    for code in sorted((doc_http | doc_ws) - sendable):
        problem(rel(PROTOCOL_MD), f"error code `{code}` does not exist in the code")
    for code in sorted(sendable - doc_http - doc_ws):
        problem(rel(PROTOCOL_MD), f"error code `{code}` can be sent but is not documented")
    for code in sorted(ws_codes - doc_ws):
        problem(rel(PROTOCOL_MD), f"WebSocket error code `{code}` is missing from the "
                                  "'Error codes in `error` frames' list")
    row = next((cells for header, body in md_tables(CONFIG_MD) for cells in body
                if cells and "`herald_rejected_requests_total`" in cells[0]), None)
    if row is None:
        problem(rel(CONFIG_MD), "no metrics table row for `herald_rejected_requests_total`")
        return
    listed = set(re.findall(r"`([a-z_]+)`", " ".join(row[1:])))
    for r in sorted(reason_set - listed):
        problem(rel(CONFIG_MD), f"`herald_rejected_requests_total` row does not list reason `{r}`")
    for r in sorted(listed - reason_set - {"reason"}):
        problem(rel(CONFIG_MD), f"`herald_rejected_requests_total` row lists `{r}`, which is not "
                                "a reason on /metrics")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--herald", default=os.environ.get("HERALD_BIN", str(ROOT / "build" / "herald")))
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="tree to check (default: this repository)")
    ap.add_argument("--promtool", action="store_true",
                    help="also require `promtool check metrics` to be clean with both brokers")
    args = ap.parse_args()
    set_root(args.root)
    if not os.access(args.herald, os.X_OK):
        print(f"check-docs: no herald binary at {args.herald} (build first)", file=sys.stderr)
        return 2
    check_config_keys(args.herald)
    texts = live_metrics(args.herald)
    check_metrics(texts)
    check_codes(texts["memory"])
    if args.promtool:
        check_promtool(texts)
    for p in problems:
        print(p)
    print(f"check-docs: {len(problems)} disagreement(s) between the docs and {args.herald}"
          if problems else "check-docs: the docs agree with the binary", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
