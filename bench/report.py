#!/usr/bin/python3
"""Turns the raw runs of bench/run.sh into bench/results/latest.json, docs/benchmarks.md and
gnuplot charts in docs/bench/. Python standard library only (Debian's /usr/bin/python3).

    report.py --runs RUNS.jsonl --meta META.json --out-json latest.json \
              [--out-md docs/benchmarks.md --charts docs/bench]

Can also re-render from an earlier latest.json: report.py --from-json bench/results/latest.json ...
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

# Scenario order and description. Targets: issue 3 against nchan, issue 15 against uWebSockets
# (ratio = herald / peer within the same repetition, then the median).
SCENARIOS = [
    ("idle_ws_10k", "10,000 idle WebSocket connections (1,000 topics)"),
    ("idle_sse_10k", "10,000 idle SSE connections (1,000 topics)"),
    ("ws_1x1000_100mps", "WS, 1 topic x 1,000 subscribers, 100 msg/s, 64 B"),
    ("ws_1x1000_flat", "WS, 1 topic x 1,000 subscribers, flat out, 64 B"),
    ("ws_1x1000_flat_presence", "the same with presence on every topic (herald; nchan runs it plain)"),
    ("ws_1x1000_flat_4k", "WS, 1 topic x 1,000 subscribers, flat out, 4 KiB"),
    ("ws_1x10000_flat", "WS, 1 topic x 10,000 subscribers, flat out, 64 B"),
    ("ws_1x10000_flat_4k", "WS, 1 topic x 10,000 subscribers, flat out, 4 KiB"),
    ("ws_10000x1_flat", "WS, 10,000 topics x 1 subscriber, flat out, 64 B"),
    ("sse_1x1000_flat", "SSE, 1 topic x 1,000 subscribers, flat out, 64 B"),
    ("sse_1x1000_flat_4k", "SSE, 1 topic x 1,000 subscribers, flat out, 4 KiB"),
    ("publish_only", "publish only, 1,000 topics, no subscribers, 64 B"),
    ("publish_only_history", "the same, herald with its default history (100 per topic; the peers keep none)"),
    ("publish_only_4k", "publish only, 1,000 topics, no subscribers, 4 KiB"),
]
CPU_TARGETS = {  # max herald/nchan ratio of CPU per 1,000 deliveries (or publish requests)
    "ws_1x10000_flat": 0.10,
    "ws_1x1000_flat": 0.20,
    "sse_1x1000_flat": 0.20,
    "publish_only": 0.20,
}
RSS_TARGET_BYTES = 2048
UWS_CPU_TARGETS = {  # issue 15: max herald/uWS ratio
    "ws_1x1000_flat": 1.0,
    "ws_1x10000_flat": 1.0,
    "sse_1x1000_flat": 1.0,
    "ws_10000x1_flat": 1.2,
    "publish_only": 1.5,
    "publish_only_history": 2.0,
}
UWS_RSS_TARGET_BYTES = 600
SERVER_ORDER = ("herald", "uws", "nchan")
NAMES = {"herald": "herald", "uws": "uWS", "nchan": "nchan"}
PEERS = ("uws", "nchan")
FD_LIMIT_NOTE = 20000


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def is_idle(r):
    return r.get("mode") == "idle"


def cpu_metric(r):
    if r.get("mode") == "publish_only":
        return r.get("cpu_us_per_1000_publishes")
    return r.get("cpu_us_per_1000_deliveries")


def summarize(runs):
    """Medians per (scenario, server); ratios per repetition against nchan, then their median."""
    by = {}
    for r in runs:
        by.setdefault(r["scenario"], {}).setdefault(r["server"], []).append(r)
    summary = {}
    for scen, servers in by.items():
        s = {}
        for server, rs in servers.items():
            ok = [r for r in rs if not r.get("failed")]
            m = {"runs": len(rs), "failed_runs": len(rs) - len(ok)}
            m["server_died"] = sum(1 for r in rs if r.get("server_alive") == 0)
            m["stop_killed"] = sum(1 for r in rs if r.get("stop_killed"))
            if ok:
                m["mode"] = ok[0].get("mode")
                if is_idle(ok[0]):
                    for k in ("rss_per_conn_bytes", "pss_per_conn_bytes", "open_at_end", "connected"):
                        m[k] = median([r.get(k) for r in ok])
                    m["server_closed"] = sum(r.get("server_closed", 0) for r in ok)
                    m["connect_failures"] = sum(r.get("connect_failures", 0) for r in ok)
                else:
                    for k in ("deliveries_per_s", "publish_req_per_s", "server_cpu_us",
                              "client_cpu_us", "deliveries", "publishes"):
                        m[k] = median([r.get(k) for r in ok])
                    m["cpu_per_1000"] = median([cpu_metric(r) for r in ok])
                    cpus = [cpu_metric(r) for r in ok if cpu_metric(r) is not None]
                    m["cpu_per_1000_min"] = min(cpus) if cpus else None
                    m["cpu_per_1000_max"] = max(cpus) if cpus else None
                    for p in ("p50", "p90", "p99", "p99.9", "max"):
                        m[p] = median([r["latency_us"].get(p) for r in ok if r.get("latency_us", {}).get("count")])
                    for k in ("lost", "dup", "reordered", "misrouted", "server_closed",
                              "publish_errors", "error_frames", "connect_failures"):
                        m[k] = sum(r.get(k, 0) or 0 for r in ok)
                    m["not_drained"] = sum(1 for r in ok if not r.get("drained", 1))
                    m["rate_not_reached"] = sum(
                        1 for r in ok if r.get("rate") and r.get("publish_req_per_s", 0) < 0.95 * r["rate"])
                    m["warmup_failed"] = sum(1 for r in ok if not r.get("warmup_ok", 1))
                m["errors"] = sorted({e for r in ok for e in r.get("errors", [])})[:5]
            s[server] = m
        # per-repetition ratios herald / peer: "ratio" against nchan, "ratio_uws" against uWS
        h = {r["repeat"]: r for r in servers.get("herald", []) if not r.get("failed")}
        for peer in PEERS:
            n = {r["repeat"]: r for r in servers.get(peer, []) if not r.get("failed")}
            s["ratio" if peer == "nchan" else "ratio_" + peer] = peer_ratios(h, n)
        summary[scen] = s
    return summary


def peer_ratios(h, n):
    ratios = {}
    for rep in sorted(set(h) & set(n)):
        a, b = h[rep], n[rep]
        if is_idle(a):
            x, y = a.get("rss_per_conn_bytes"), b.get("rss_per_conn_bytes")
            if x is not None and y:
                ratios.setdefault("rss_per_conn", []).append(x / y)
        else:
            x, y = cpu_metric(a), cpu_metric(b)
            if x is not None and y:
                ratios.setdefault("cpu", []).append(x / y)
            x, y = a.get("deliveries_per_s") or a.get("publish_req_per_s"), b.get("deliveries_per_s") or b.get("publish_req_per_s")
            if x and y:
                ratios.setdefault("rate", []).append(x / y)
            x, y = a.get("latency_us", {}).get("p99"), b.get("latency_us", {}).get("p99")
            if x and y:
                ratios.setdefault("p99", []).append(x / y)
    return {k: median(v) for k, v in ratios.items()}


def fmt(x, digits=0):
    if x is None:
        return "–"
    if isinstance(x, float) and digits == 0:
        x = round(x)
    if isinstance(x, (int,)) or digits == 0:
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def fmt_lat(us):
    if us is None:
        return "–"
    if us >= 1000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.0f} µs"


def fmt_ratio(x):
    return "–" if x is None else f"{x:.2f}"


def plot(summary, chart_dir, servers):
    """Three PNG charts with gnuplot: deliveries/s, CPU per 1,000, latency percentiles."""
    if not shutil.which("gnuplot"):
        print("report.py: gnuplot not found, no charts (apt-get install gnuplot-nox)", file=sys.stderr)
        return []
    os.makedirs(chart_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="herald-plot.")
    flow = [s for s, _ in SCENARIOS if s in summary and not s.startswith("idle")]
    idle = [s for s, _ in SCENARIOS if s in summary and s.startswith("idle")]
    made = []

    def write(name, rows):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            for row in rows:
                f.write("\t".join(str(v) for v in row) + "\n")
        return path

    def val(s, server, key):
        v = summary[s].get(server, {}).get(key)
        return "NaN" if v is None else v

    def bars(fname, title, ylabel, key, scen, logscale=False):
        if not scen:
            return
        data = write(fname + ".dat", [[s] + [val(s, sv, key) for sv in servers] for s in scen])
        cols = " , ".join(
            f"'{data}' using {i + 2}:xtic(1) title '{NAMES.get(sv, sv)}'" for i, sv in enumerate(servers))
        script = f"""
set terminal pngcairo size 1100,520 font 'DejaVu Sans,10'
set output '{os.path.join(chart_dir, fname + '.png')}'
set title '{title}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -25 noenhanced
set key top left
set grid ytics
{'set logscale y' if logscale else 'set yrange [0:*]'}
set datafile missing 'NaN'
set datafile separator '\\t'
plot {cols}
"""
        run_gnuplot(script, tmp)
        made.append(fname + ".png")

    bars("deliveries_per_s", "Deliveries per second (higher is better; publish only: requests/s)",
         "per second", "rate_metric", flow)
    bars("cpu_per_1000", "Server CPU-µs per 1,000 deliveries (publish only: per 1,000 requests; lower is better)",
         "CPU µs", "cpu_per_1000", flow, logscale=True)
    bars("rss_per_conn", "Server RSS per idle connection (bytes, lower is better)", "bytes",
         "rss_per_conn_bytes", idle)
    # latency: p50 / p99 / p99.9 per scenario and server
    lat_scen = [s for s in flow if not s.startswith("publish")]
    if lat_scen:
        rows = []
        for s in lat_scen:
            row = [s]
            for sv in servers:
                for p in ("p50", "p99", "p99.9"):
                    v = summary[s].get(sv, {}).get(p)
                    row.append("NaN" if v is None else v / 1000.0)
            rows.append(row)
        data = write("latency.dat", rows)
        cols = []
        i = 2
        for sv in servers:
            for p in ("p50", "p99", "p99.9"):
                cols.append(f"'{data}' using {i}:xtic(1) title '{NAMES.get(sv, sv)} {p}'")
                i += 1
        script = f"""
set terminal pngcairo size 1200,560 font 'DejaVu Sans,10'
set output '{os.path.join(chart_dir, 'latency.png')}'
set title 'Delivery latency percentiles (ms, log scale; flat-out runs include queueing behind the in-flight window)'
set ylabel 'ms'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -25 noenhanced
set key top left
set grid ytics
set logscale y
set datafile missing 'NaN'
set datafile separator '\\t'
plot {' , '.join(cols)}
"""
        run_gnuplot(script, tmp)
        made.append("latency.png")
    shutil.rmtree(tmp, ignore_errors=True)
    return made


def run_gnuplot(script, tmp):
    path = os.path.join(tmp, "plot.gp")
    with open(path, "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", path], check=False, timeout=60)


def status_flags(m):
    flags = []
    for k in ("lost", "dup", "reordered", "misrouted", "server_closed", "publish_errors",
              "error_frames", "connect_failures", "not_drained", "rate_not_reached", "warmup_failed", "failed_runs",
              "server_died", "stop_killed"):
        if m.get(k):
            flags.append(f"{k}={m[k]}")
    return flags


def target_cell(tgt, ratio):
    if tgt is None:
        return ""
    return f"≤ {tgt:.2f}: " + ("–" if ratio is None else ("**met**" if ratio <= tgt else "not met"))


def spread(m):
    """(max - min) / median of a server's CPU per 1,000 over the repetitions."""
    lo, hi, med = m.get("cpu_per_1000_min"), m.get("cpu_per_1000_max"), m.get("cpu_per_1000")
    if lo is None or hi is None or not med or m.get("runs", 0) < 2:
        return None
    return (hi - lo) / med


def render_md(meta, summary, runs, charts, optimisations, extras=()):
    servers = [s for s in SERVER_ORDER if any(s in v for v in summary.values())]
    peers = [p for p in PEERS if p in servers]
    names = " vs ".join({"herald": "herald", "uws": "uWebSockets", "nchan": "nginx + nchan"}[s] for s in servers)
    out = []
    w = out.append
    stamp = meta.get("stamp", "")
    w(f"# Benchmarks: {names}")
    w("")
    w("Generated by `bench/run.sh` (`make bench`) through `bench/report.py`; do not edit by hand, rerun it. "
      "Raw runs: `bench/results/latest.json`.")
    w("")
    w(f"Run {stamp}: {meta.get('repeat')} repetition(s) per scenario and server, {meta.get('duration')} s "
      f"measured per run, servers alternating within each repetition (the order reversed every other "
      f"repetition), a freshly started server for every run, all servers in the same run. Figures are "
      f"**medians**; ratios are herald / peer within the same repetition, then the median. "
      f"Whole matrix: {meta.get('wall_s')} s{' (QUICK mode)' if meta.get('quick') else ''}.")
    w("")
    w("## Machine")
    w("")
    loads = [r.get("loadavg") for r in runs if r.get("loadavg") is not None]
    if loads:
        w(f"- 1-minute load average at the end of each run: median {statistics.median(loads):.1f}, "
          f"max {max(loads):.1f} (2 means both cores busy; the benchmark itself brings it near 2)")
        if statistics.median(loads) > 3:
            w("- **Other work was running on the machine during this run** (load well above 2): absolute rates "
              "and latencies are pessimistic and noisy, a paced run may fall short of its rate; the CPU-per-"
              "delivery figures and the same-repetition ratios are the robust part. Rerun on a quiet machine.")
    spreads = {sv: [x for x in (spread(summary[sc].get(sv, {})) for sc in summary) if x is not None]
               for sv in servers}
    if any(spreads.values()):
        w("- Noise: spread (highest − lowest) / median of CPU per 1,000 over the repetitions of a scenario, "
          "median over the scenarios: " + ", ".join(
              f"{NAMES[sv]} {statistics.median(v) * 100:.0f} % (worst {max(v) * 100:.0f} %)"
              for sv, v in spreads.items() if v))
    w(f"- CPU: {meta.get('cpu')}, `nproc` = {meta.get('nproc')} (shared and noisy: the client, the server "
      "and whatever else runs share them, so absolute rates mislead; compare CPU per delivery and ratios)")
    w(f"- Kernel {meta.get('kernel')}, {meta.get('mem_mb')} MiB RAM, fd limit per process {meta.get('fd_limit')}")
    w(f"- herald at commit {meta.get('herald_commit')} when the run started (binary sha256 "
      f"{meta.get('herald_sha256', '?')}), 2 workers, `history.size: {meta.get('herald_history')}` "
      "(`publish_only_history`: 100, herald's default)")
    if "uws" in servers:
        w(f"- uWebSockets peer (`bench/peers/uws/server.cpp`, one thread, one process: its best case) built "
          f"by `bench/peers/uws/build.sh` from {meta.get('uws', '?')}")
    if "nchan" in servers:
        w(f"- nginx {meta.get('nginx')} with libnginx-mod-nchan {meta.get('nchan')} (2 worker processes, "
          "`nchan_message_buffer_length 1`: with 0 nchan 1.3.6 keeps every message in shared memory until it "
          "times out and runs out of it under 4 KiB load)")
    w(f"- Load generator: `herald-bench`, {meta.get('threads')} threads, on the same cores")
    w("")
    w("## Headline: server CPU per 1,000 deliveries")
    w("")
    w("CPU is the server's utime + stime (`/proc/PID/stat`, all nginx processes summed) over the measured "
      "phase, divided by the deliveries the clients received (publish only: by the publish requests "
      "answered). Under each median: the lowest and highest of the repetitions. Targets: issue 15 against "
      "uWebSockets, issue 3 against nchan.")
    w("")
    hdr = ["scenario"] + [f"{NAMES[s]} CPU-µs/1k" for s in servers]
    for p in peers:
        hdr += [f"herald/{NAMES[p]}", "target"]
    hdr += [f"{NAMES[s]} del/s" for s in servers] + ["lost / dup / reord"]
    w("| " + " | ".join(hdr) + " |")
    w("|" + "---|" * len(hdr))
    for scen, desc in SCENARIOS:
        if scen not in summary or scen.startswith("idle"):
            continue
        s = summary[scen]
        row = [f"`{scen}`<br>{desc}"]
        for sv in servers:
            m = s.get(sv, {})
            cell = fmt(m.get("cpu_per_1000"))
            if m.get("runs", 0) > 1 and m.get("cpu_per_1000_min") is not None:
                cell += f"<br><sub>{fmt(m['cpu_per_1000_min'])}–{fmt(m['cpu_per_1000_max'])}</sub>"
            row.append(cell)
        for p in peers:
            r = s.get("ratio" if p == "nchan" else "ratio_" + p, {})
            row.append(fmt_ratio(r.get("cpu")))
            if scen == "ws_1x1000_100mps":
                p99r = r.get("p99")
                row.append(f"p99 ≤ {NAMES[p]}: " + ("–" if p99r is None else
                                                    f"{p99r:.2f}, " + ("**met**" if p99r <= 1 else "not met")))
            else:
                row.append(target_cell((CPU_TARGETS if p == "nchan" else UWS_CPU_TARGETS).get(scen), r.get("cpu")))
        for sv in servers:
            m = s.get(sv, {})
            rate = m.get("deliveries_per_s") if m.get("mode") != "publish_only" else m.get("publish_req_per_s")
            row.append(fmt(rate) + (" req/s" if m.get("mode") == "publish_only" else ""))
        row.append("<br>".join(f"{NAMES[sv]}: {s.get(sv, {}).get('lost', 0)}/{s.get(sv, {}).get('dup', 0)}/"
                               f"{s.get(sv, {}).get('reordered', 0)}" for sv in servers if sv in s))
        w("| " + " | ".join(row) + " |")
    w("")
    w("## Latency")
    w("")
    w("Publish to delivery, measured by the subscriber (p50 / p99 / p99.9, medians over the repetitions). "
      "Flat-out runs include the queue behind the in-flight window (see Method), so only the paced "
      "`ws_1x1000_100mps` is a latency figure in the usual sense.")
    w("")
    w("| scenario | " + " | ".join(f"{NAMES[s]} p50 / p99 / p99.9" for s in servers) + " |")
    w("|---|" + "---|" * len(servers))
    for scen, desc in SCENARIOS:
        if scen not in summary or scen.startswith("idle") or scen.startswith("publish"):
            continue
        s = summary[scen]
        w(f"| `{scen}` | " + " | ".join(" / ".join(fmt_lat(s.get(sv, {}).get(p)) for p in ("p50", "p99", "p99.9"))
                                      for sv in servers) + " |")
    w("")
    w("## Memory: RSS per idle connection")
    w("")
    w("Server RSS (VmRSS, summed over processes) after the connections have been open for the idle period, "
      "minus RSS before the first connection, divided by the connections. PSS (proportional set size, "
      "`smaps_rollup`) divides pages shared between nginx processes instead of counting them once per "
      "process. Kernel socket memory is not in either figure.")
    w("")
    hdr = ["scenario"] + [f"{NAMES[s]} RSS/conn" for s in servers] + [f"{NAMES[s]} PSS/conn" for s in servers]
    for p in peers:
        hdr.append(f"herald/{NAMES[p]}")
    hdr += [f"target (issue 15: ≤ {UWS_RSS_TARGET_BYTES} B)", f"target (issue 3: ≤ {RSS_TARGET_BYTES} B)"]
    w("| " + " | ".join(hdr) + " |")
    w("|" + "---|" * len(hdr))
    for scen, desc in SCENARIOS:
        if scen not in summary or not scen.startswith("idle"):
            continue
        s = summary[scen]
        row = [f"`{scen}`<br>{desc}"]
        row += [fmt(s.get(sv, {}).get("rss_per_conn_bytes")) + " B" for sv in servers]
        row += [fmt(s.get(sv, {}).get("pss_per_conn_bytes")) + " B" for sv in servers]
        for p in peers:
            row.append(fmt_ratio(s.get("ratio" if p == "nchan" else "ratio_" + p, {}).get("rss_per_conn")))
        h = s.get("herald", {}).get("rss_per_conn_bytes")
        for t in (UWS_RSS_TARGET_BYTES, RSS_TARGET_BYTES):
            row.append("–" if h is None else ("**met**" if h <= t else "not met"))
        w("| " + " | ".join(row) + " |")
    w("")
    # anomalies
    w("## Loss, duplicates, errors")
    w("")
    w("Every run must lose nothing. A subscriber counts as lost every measured message of its topic it did "
      "not get (the publisher's sequence numbers per topic, after the bounded drain); a duplicate is a sequence "
      "seen twice; reordered is a sequence that arrived after a higher one.")
    w("")
    any_flag = False
    for scen, _ in SCENARIOS:
        for sv in servers:
            m = summary.get(scen, {}).get(sv)
            if not m:
                continue
            flags = status_flags(m)
            if flags or m.get("errors"):
                any_flag = True
                errs = "; ".join(m.get("errors", []))
                w(f"- **{NAMES.get(sv, sv)} `{scen}`**: {', '.join(flags) or 'no counter set'}" + (f" — first errors: `{errs}`" if errs else ""))
    if any(summary.get(sc, {}).get(sv, {}).get("stop_killed") for sc, _ in SCENARIOS for sv in servers):
        w("")
        w("`stop_killed`: the server was still running 8 s after SIGTERM (herald's `shutdown.drain_timeout` is "
          "5 s in these runs, and every client had already disconnected) and had to be killed.")
    if any(summary.get(sc, {}).get(sv, {}).get("rate_not_reached") for sc, _ in SCENARIOS for sv in servers):
        w("")
        w("`rate_not_reached`: a paced run published less than 95% of the asked rate (the server, or the "
          "machine, could not keep up); its latency is then that of an overloaded server.")
    if not any_flag:
        w("- None: no loss, duplicate, reordering, server close, publish error or failed run in any run.")
    w("")
    if charts:
        w("## Charts")
        w("")
        for c in charts:
            w(f"![{c[:-4]}](bench/{c})")
            w("")
    # million connections
    w("## What a million connections would cost")
    w("")
    rows = []
    for scen in ("idle_ws_10k", "idle_sse_10k"):
        for sv in servers:
            v = summary.get(scen, {}).get(sv, {}).get("rss_per_conn_bytes")
            if v is not None:
                rows.append((scen, sv, v))
    if rows:
        w("| measured | bytes/conn (RSS) | 100,000 connections | 1,000,000 connections |")
        w("|---|---|---|---|")
        for scen, sv, v in rows:
            w(f"| {NAMES[sv]}, {scen} | {fmt(v)} | {v * 1e5 / 2**20:,.0f} MiB | {v * 1e6 / 2**30:,.2f} GiB |")
        w("")
    per_proc = FD_LIMIT_NOTE - 500
    w(f"A process may hold at most {FD_LIMIT_NOTE:,} file descriptors here (hard limit), so one herald "
      f"process serves at most about {per_proc:,} clients (keeping some descriptors for listeners, publishers "
      f"and files). 100,000 connections therefore need at least {-(-100000 // per_proc)} herald processes and "
      f"1,000,000 need at least {-(-1000000 // per_proc)}; the processes share topics through the Redis broker "
      "(`broker: redis`): see \"100,000 connections: several instances on one Redis\" below. The figures above are user-space memory only: the kernel adds its own per-socket "
      "cost (socket, TCP control block, and buffers while data is queued; a few KiB per idle loopback "
      "socket), and the load generator needs as many descriptors again, on other source addresses.")
    w("")
    # commands
    w("## How to run")
    w("")
    w("```")
    w("make bench                      # or: bench/run.sh (full matrix, 3 servers, 3 repetitions: about 15-25 minutes)")
    w("QUICK=1 bench/run.sh            # one short run per scenario: about 2-4 minutes")
    w("SCENARIOS='ws_1x10000_flat publish_only' REPEAT=5 bench/run.sh")
    if not meta.get("quick"):
        w(f"REPEAT={meta.get('repeat')} make bench".ljust(32) + "# this run")
    w("SERVERS=nchan bench/run.sh      # one peer alone (herald, uws, nchan)")
    w("```")
    w("")
    w("The uWebSockets peer is built once, from pinned upstream commits, outside the source tree "
      "(`build/peers/uws/uws-peer`); `bench/run.sh` skips it, saying so, when it is not built:")
    w("")
    w("```")
    w("make bench-peers                          # = bench/peers/uws/build.sh: clones the pinned commits from GitHub")
    w("bench/peers/uws/build.sh /path/to/src     # or from local checkouts / git directories of uWebSockets and uSockets")
    w("```")
    w("")
    w("Knobs (environment): `HERALD_BIN`, `BENCH_BIN`, `UWS_BIN`, `NGINX_BIN`, `NCHAN_MODULE`, `SERVERS`, `REPEAT`, "
      "`QUICK`, `DURATION`, `IDLE`, `SCENARIOS`, `THREADS`, `DRAIN`, `HERALD_HISTORY`, `NO_REPORT`, `KEEP_TMP`. "
      "Needs Debian packages `nginx`, `libnginx-mod-nchan`, `gnuplot-nox`, `curl`, `iproute2` (and for the "
      "uWebSockets peer `g++` 12 or later, `zlib1g-dev`, `git`, all in scripts/install-deps.sh).")
    w("")
    w("Servers, each started fresh for every run on its own loopback port:")
    w("")
    w("```")
    w(f"herald --config herald.yaml --listen 127.0.0.1:PORT --workers 2 --log-level warn")
    w(f"#   herald.yaml: limits.max_connections 20000, limits.max_queued_bytes 4MiB, history.size {meta.get('herald_history')}")
    w("uws-peer PORT                    # bench/peers/uws/server.cpp: one thread, listens on 127.0.0.1:PORT")
    w("nginx -p TMP -c TMP/nginx.conf   # from bench/nchan.conf.in: 2 workers, /ws, /sse, /publish/{topic}, no history (buffer length 1, see the file)")
    w("```")
    w("")
    w("The load generator's command line per scenario (`--port` and `--server-pid` filled in by the script):")
    w("")
    w("```")
    seen = set()
    for r in runs:
        if r.get("server") != "herald" and "herald" in servers:
            continue
        if r["scenario"] in seen or "cmd" not in r:
            continue
        seen.add(r["scenario"])
        cmd = r["cmd"]
        parts = cmd.split()
        clean = []
        skip = False
        for i, p in enumerate(parts):
            if skip:
                skip = False
                continue
            if p in ("--port", "--server-pid"):
                skip = True
                continue
            clean.append(p)
        w(" ".join(clean))
    w("```")
    w("")
    w("## Method")
    w("")
    w("- **Load generator** (`bench/herald-bench.cpp`): C++20 over plain epoll, one epoll per thread; WebSocket "
      "(RFC 6455, masked client frames, any frame length, text/binary/continuation, pings answered) and SSE "
      "(`data:` lines, chunked or not) subscribers on source addresses 127.0.0.1..127.0.0.K (K = one per "
      "20,000 connections); HTTP/1.1 keep-alive publishers with pipelining. Subscriber i listens to topic "
      "`t<i % T>`; topic t is always published through publisher connection t % P, so the server sees each "
      "topic's messages in order.")
    w("- **Payload**: `HB k=<topic> s=<seq> m=<0|1> t=<CLOCK_MONOTONIC ns> ` padded with `x` to the size, "
      "published as `text/plain`. herald's WebSocket delivers it inside its JSON (`\"data\":\"HB ...\"`), "
      "herald's and nchan's SSE as a `data:` line; nchan's WebSocket (no subprotocol requested) sends the "
      "bare body as one text frame. The uWebSockets peer mirrors herald: the same JSON envelope per WebSocket "
      "message (`{\"type\":\"message\",\"topic\",\"epoch\",\"offset\",\"data\"}`, built once per message) and the "
      "same SSE event (`id: epoch:offset` and `data:` lines), but its SSE stream is chunked (uWS's "
      "`HttpResponse::write`), 6-8 bytes more per write; it keeps no history, checks nothing and runs one thread. "
      "The client finds the prefix in all of them.")
    w("- **Warm-up**: before measuring, every subscriber must receive one unmeasured message (m=0), which "
      "proves it is attached; publishes are then allowed to settle.")
    w("- **Flat out** means as fast as the server absorbs it, with flow control: a publisher sends only while "
      "fewer than max(2,000, 16 x subscribers per topic) deliveries are owed (16 messages of a fan-out topic in flight), and at most `--pipeline` requests "
      "are in flight per connection. This keeps every run bounded and lossless by construction on the client "
      "side, so any loss is the server's; the latency of flat-out runs is mostly that queue. "
      "**Paced** (100 msg/s) stamps each message with its scheduled send time, so a late send counts as "
      "latency (no coordinated omission).")
    w(f"- **End of run**: publishing stops, then the tool waits (at most {meta.get('drain', 5)} s) until every publish is answered "
      "and every owed delivery arrived; what is still missing is lost.")
    w("- **Idle**: connections are opened, held for the idle period, and the server's RSS growth is divided by "
      "the connections still open.")
    w("")
    for extra in extras:  # hand-run measurements kept in bench/results/*.md (see each section)
        w(extra.rstrip())
        w("")
    if optimisations:
        w("## Optimisations and what they bought")
        w("")
        w(optimisations.rstrip())
        w("")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs")
    ap.add_argument("--meta")
    ap.add_argument("--from-json")
    ap.add_argument("--out-json")
    ap.add_argument("--out-md")
    ap.add_argument("--charts")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            doc = json.load(f)
        meta, runs = doc["meta"], doc["runs"]
    else:
        runs = []
        with open(a.runs) as f:
            for line in f:
                line = line.strip()
                if line:
                    runs.append(json.loads(line))
        with open(a.meta) as f:
            meta = json.load(f)
    summary = summarize(runs)
    for s in summary.values():  # one rate metric for the charts
        for sv, m in s.items():
            if not sv.startswith("ratio"):
                m["rate_metric"] = m.get("publish_req_per_s") if m.get("mode") == "publish_only" else m.get("deliveries_per_s")
    doc = {"meta": meta, "summary": summary, "runs": runs,
           "generated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if a.out_json:
        with open(a.out_json, "w") as f:
            json.dump(doc, f, indent=1)
    if a.out_md:
        servers = [s for s in SERVER_ORDER if any(s in v for v in summary.values())]
        charts = plot(summary, a.charts or os.path.join(os.path.dirname(a.out_md), "bench"), servers)
        opt_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimisations.md")
        optimisations = open(opt_path).read() if os.path.exists(opt_path) else ""
        # measured by their own scripts, kept as markdown (bench/compression.py --out-md, and the
        # slow-consumer runs of bench/slow_consumer.py --out-md, bench/cluster.sh's one Redis against
        # a 3+3 cluster): shown after Method
        extras = []
        for name in ("compression.md", "slow_consumer.md", "cluster.md"):
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", name)
            if os.path.exists(path):
                extras.append(open(path).read())
        with open(a.out_md, "w") as f:
            f.write(render_md(meta, summary, runs, charts, optimisations, extras))
            # written by bench/run-100k.sh (several instances on one Redis), when it has run
            big = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "100k.md")
            if os.path.exists(big):
                f.write("\n" + open(big).read().rstrip() + "\n")
    # a short console summary
    for scen, _ in SCENARIOS:
        if scen not in summary:
            continue
        s = summary[scen]
        parts = []
        for sv in SERVER_ORDER:
            m = s.get(sv)
            if not m:
                continue
            if m.get("mode") == "idle":
                parts.append(f"{sv} rss/conn={fmt(m.get('rss_per_conn_bytes'))}")
            else:
                parts.append(f"{sv} cpu/1k={fmt(m.get('cpu_per_1000'))} p99={fmt_lat(m.get('p99'))}")
        ratios = [f"herald/{NAMES[p]} cpu={fmt_ratio(s.get('ratio' if p == 'nchan' else 'ratio_' + p, {}).get('cpu'))}"
                  for p in PEERS if s.get("ratio" if p == "nchan" else "ratio_" + p, {}).get("cpu")]
        print(f"{scen:22} " + "  ".join(parts + ratios))


if __name__ == "__main__":
    main()
