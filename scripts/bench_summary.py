#!/usr/bin/env python3
"""Summary of one scripts/bench.sh run: tables, ratios, plots.

Usage: scripts/bench_summary.py bench-results/<date>-<host> [--doc BENCHMARKS.md]

Reads RUN_DIR/raw/ (runs.tsv, one loadtest JSON per run, machine.txt,
invocation.txt, commands.txt, and <run>.perf.txt where BENCH_PERF made them)
and writes RUN_DIR/summary.json, RUN_DIR/summary.md and
RUN_DIR/plots/<scenario>.svg. With --doc, replaces the text between
`<!-- bench:begin -->` and `<!-- bench:end -->` in that file with the same
tables (links relative to the repository root).

Per (scenario, server) it takes the median over the repeats. Servers are
bench.sh's kinds: fanout, uws and ws consume the same tansu topic; the extra
rows fanout-embedded (fanout's in-process broker) and uws-socket (the uWS
peer fed over a WebSocket) exist on a few scenarios only.

Server utilisation is the median of loadtest's once-a-second server CPU
readings over the seconds that carried at least half the run's peak delivery
rate; the load core's utilisation is loadtest's CPU plus the broker's
(tansu shares that core) over the delivery window (first send to last
receipt). A core at >= 80% is the bottleneck. The kernel's share of a
server's CPU is stime / (utime + stime) over the load window, from
/proc/<pid>/stat (loadtest samples it at the start and end of the window).
Idle CPU is the server's CPU over the idle hold ÷ the hold. "Other load" is
CPU time on the two benchmark cores used by none of server, loadtest and
tansu (other jobs on a shared machine), from /proc/stat.

Python 3 standard library only.
"""

import csv
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ in the work tree
import plot  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
MAIN = ("fanout", "uws", "ws")
EXTRA = ("fanout-embedded", "uws-socket")
SERVERS = MAIN + EXTRA
SERVER_NAMES = {
    "fanout": "fanout",
    "uws": "uWS + kafkajs",
    "ws": "ws + kafkajs",
    "fanout-embedded": "fanout, embedded broker (extra)",
    "uws-socket": "uWS, socket-fed (extra)",
}
PEERS = (("uws", "uWS"), ("ws", "ws"))
BUSY = 0.8


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fnum(v):
    return "-" if v is None else f"{v:,.0f}".replace(",", " ")


def fsi(v):
    """1 234 567 -> 1.23 M."""
    if v is None:
        return "-"
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def flat(us):
    if us is None:
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.3g} ms"
    return f"{us:.0f} µs"


def fbytes(b):
    if b is None:
        return "-"
    if b >= 1 << 20:
        return f"{b / (1 << 20):.1f} MiB"
    if b >= 1 << 10:
        return f"{b / (1 << 10):.2f} KiB"
    return f"{b:.0f} B"


def fratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fx(r):
    return "-" if r is None else f"{r:.2f}×"


def fpct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def fpct1(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def to_float(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def load_run(raw, row):
    """One run: the runs.tsv row plus what its loadtest JSON says."""
    run = {
        "run": row["run"],
        "server": row["server"],
        "repeat": int(row["repeat"]),
        "exit": int(row["exit"]),
        "wall_s": to_float(row["wall_s"]),
        "loadtest_cpu_s": to_float(row["loadtest_cpu_s"]),
        "server_cpu_s": to_float(row["server_cpu_s"]),
        "broker_cpu_s": to_float(row.get("broker_cpu_s")),
        "cores_busy_s": to_float(row["cores_busy_s"]),
    }
    perf = os.path.join(raw, row["run"] + ".perf.txt")
    run["perf"] = os.path.basename(perf) if os.path.exists(perf) else None
    path = os.path.join(raw, row["run"] + ".json")
    if not os.path.exists(path):
        run["verdict"] = f"no result (exit {run['exit']}); see raw/{row['run']}.loadtest.log"
        return run, None
    with open(path, encoding="utf-8") as f:
        rep = json.load(f)
    d, a, s, c = rep["delivery"], rep["audit"], rep.get("server") or {}, rep["client"]
    b = rep.get("broker") or {}
    lat = d["latency"]
    window = d["deliveries"] / d["deliveries_per_sec"] if d["deliveries_per_sec"] else None
    load = rep.get("produce") is not None
    server_cpu = s.get("load_cpu_secs")
    embedded = row["server"] == "fanout-embedded"
    ex_broker = None
    if embedded and load and server_cpu is not None and run["broker_cpu_s"] is not None:
        ex_broker = max(server_cpu - run["broker_cpu_s"], 1e-9)
    faults = [
        (a.get(k, 0), k.replace("_", "-"))
        for k in ("missing", "duplicate", "out_of_order", "misrouted", "malformed")
    ]
    faults.append((a.get("failed_subscribers", 0), "failed subs"))
    faults.append((sum((a.get("closed_by_server") or {}).values()), "closed subs"))
    loadtest_util = c["load_cpu_secs"] / window if window else None
    broker_util = b["load_cpu_secs"] / window if window and "load_cpu_secs" in b else None
    run.update(
        {
            "passed": bool(a["passed"]) and run["exit"] == 0,
            "verdict": "exact"
            if a["passed"]
            else "FAIL: " + ", ".join(f"{n} {what}" for n, what in faults if n) or "FAIL",
            "acked": rep["connect"]["acked"],
            "events": (rep.get("produce") or {}).get("events_sent"),
            "send_rate": (rep.get("produce") or {}).get("send_rate"),
            "deliveries": d["deliveries"],
            "deliveries_per_sec": d["deliveries_per_sec"] if load else None,
            "p50_us": lat["p50_us"] or None,
            "p99_us": lat["p99_us"] or None,
            "p999_us": lat["p999_us"] or None,
            "max_us": lat["max_us"] or None,
            "deliveries_per_server_cpu_s": s.get("deliveries_per_cpu_sec") if load else None,
            "deliveries_per_server_cpu_s_ex_broker": d["deliveries"] / ex_broker if ex_broker else None,
            "inproc_broker_share": run["broker_cpu_s"] / run["server_cpu_s"]
            if embedded and load and run["broker_cpu_s"] is not None and run["server_cpu_s"]
            else None,
            "kernel_share": s["load_sys_secs"] / server_cpu
            if server_cpu and s.get("load_sys_secs") is not None
            else None,
            "idle_cpu": server_cpu / s["load_window_secs"]
            if not load and server_cpu is not None and s.get("load_window_secs")
            else None,
            "rss_before_bytes": (s.get("before") or {}).get("rss_bytes"),
            "rss_subscribed_bytes": (s.get("subscribed") or {}).get("rss_bytes"),
            "rss_per_conn_bytes": max(s["rss_per_conn_bytes"], 0.0) if "rss_per_conn_bytes" in s else None,
            "server_util": progress_server_util(os.path.join(raw, row["run"] + ".loadtest.log"))
            if load
            else None,
            "loadtest_util": loadtest_util,
            "broker_util": broker_util,
            "load_core_util": (loadtest_util or 0.0) + (broker_util or 0.0) if loadtest_util is not None else None,
        }
    )
    if None not in (run["cores_busy_s"], run["server_cpu_s"], run["loadtest_cpu_s"], run["wall_s"]):
        other = run["cores_busy_s"] - run["server_cpu_s"] - run["loadtest_cpu_s"]
        if not embedded and run["broker_cpu_s"] is not None:
            other -= run["broker_cpu_s"]
        run["other_load_cores"] = max(other, 0.0) / run["wall_s"] if run["wall_s"] else None
    return run, rep


PROGRESS = re.compile(r"\| deliv \d+ \((\d+)/s\).*\| server rss \S+ cpu (\d+)%")


def progress_server_util(log_path):
    """Median server CPU (fraction of a core) over the progress lines of the
    seconds that carried at least half the peak delivery rate."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            points = [(int(m.group(1)), int(m.group(2))) for m in map(PROGRESS.search, f) if m]
    except OSError:
        return None
    peak = max((rate for rate, _ in points), default=0)
    busy = [cpu / 100.0 for rate, cpu in points if peak and rate >= peak / 2]
    return statistics.median(busy) if busy else None


def bottleneck(server_util, load_util):
    if server_util is None or load_util is None:
        return "-"
    if server_util >= BUSY and load_util >= BUSY:
        return "both"
    if server_util >= BUSY or load_util >= BUSY:
        return "server" if server_util >= load_util else "load core"
    return f"neither ≥{BUSY:.0%}"


def aggregate(runs, mode):
    keys = (
        "deliveries_per_sec", "p50_us", "p99_us", "p999_us", "max_us",
        "deliveries_per_server_cpu_s", "deliveries_per_server_cpu_s_ex_broker", "inproc_broker_share",
        "kernel_share", "idle_cpu", "rss_before_bytes", "rss_subscribed_bytes",
        "rss_per_conn_bytes", "server_util", "loadtest_util", "broker_util", "load_core_util",
        "other_load_cores", "acked", "events", "send_rate",
    )
    agg = {k: median(r.get(k) for r in runs) for k in keys}
    dps = [r["deliveries_per_sec"] for r in runs if r.get("deliveries_per_sec")]
    agg["deliveries_per_sec_min"] = min(dps) if dps else None
    agg["deliveries_per_sec_max"] = max(dps) if dps else None
    agg["runs"] = len(runs)
    agg["passed"] = sum(1 for r in runs if r.get("passed"))
    agg["failures"] = [f"r{r['repeat']}: {r['verdict']}" for r in runs if not r.get("passed")]
    agg["bottleneck"] = bottleneck(agg["server_util"], agg["load_core_util"]) if mode == "sat" else "-"
    agg["perf"] = [r["perf"] for r in runs if r.get("perf")]
    return agg


def read_machine(raw):
    info = {}
    with open(os.path.join(raw, "machine.txt"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*([^:]+):\s*(.*)", line)
            if m and m.group(1) not in info:
                info[m.group(1)] = m.group(2).strip()
    return info


def collect(run_dir):
    raw = os.path.join(run_dir, "raw")
    with open(os.path.join(raw, "runs.tsv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    scenarios = {}
    reports = {}
    for row in rows:
        sc = scenarios.setdefault(
            row["scenario"],
            {
                "name": row["scenario"],
                "mode": row["mode"],
                "n": int(row["n"]),
                "k": int(row["k"]),
                "rate": int(row["rate"]) if row["rate"] else 0,
                "events": int(row["events"]) if row["events"] else None,
                "runs": {},
            },
        )
        run, rep = load_run(raw, row)
        sc["runs"].setdefault(row["server"], []).append(run)
        if rep is not None:
            reports.setdefault(row["scenario"], []).append(rep)
    commands = {}
    with open(os.path.join(raw, "commands.txt"), encoding="utf-8") as f:
        for line in f:
            run, _, cmd = line.rstrip("\n").partition(" ")
            commands.setdefault(run, []).append(cmd)
    for sc in scenarios.values():
        sc["servers"] = {s: aggregate(runs, sc["mode"]) for s, runs in sc["runs"].items()}
        f = sc["servers"].get("fanout")
        sc["ratios"] = {}
        for peer in ("uws", "ws", "fanout-embedded", "uws-socket"):
            p = sc["servers"].get(peer)
            if not (f and p):
                continue
            sc["ratios"][peer] = {
                k: fratio(f[k], p[k])
                for k in ("deliveries_per_sec", "deliveries_per_server_cpu_s", "p99_us", "rss_per_conn_bytes",
                          "idle_cpu")
            }
        sc["commands"] = {s: commands.get(f"{sc['name']}.{s}.r1", []) for s in sc["runs"]}
    with open(os.path.join(raw, "invocation.txt"), encoding="utf-8") as f:
        invocation = f.read().strip()
    return {
        "run_dir": run_dir,
        "invocation": invocation,
        "machine": read_machine(raw),
        "scenarios": list(scenarios.values()),
    }, reports


def describe(sc):
    if sc["mode"] == "fixed":
        return f"N={sc['n']:,} K={sc['k']:,}, fixed {sc['rate']:,} events/s".replace(",", " ")
    if sc["mode"] == "sat":
        return f"N={sc['n']:,} K={sc['k']:,}, saturation: {sc['events']:,} events flat out".replace(",", " ")
    return f"N={sc['n']:,} K={sc['k']:,}, idle (no events)".replace(",", " ")


def write_plots(summary, reports, run_dir):
    for sc in summary["scenarios"]:
        path = os.path.join(run_dir, "plots", sc["name"] + ".svg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sc["plot"] = None
        if sc["mode"] != "idle" and plot.write_plot(path, sc["name"], describe(sc), reports.get(sc["name"], [])):
            sc["plot"] = os.path.join("plots", sc["name"] + ".svg")


def failed_flag(sc, servers=SERVERS):
    bad = [s for s in servers if s in sc["servers"] and sc["servers"][s]["passed"] < sc["servers"][s]["runs"]]
    return " **(audit FAILED, see below)**" if bad else ""


def three(sc, key, fmt):
    """'fanout / uWS / ws' of one aggregate."""
    return " / ".join(fmt(sc["servers"][s][key]) if s in sc["servers"] else "-" for s in MAIN)


def ratio(sc, peer, key):
    return fx((sc["ratios"].get(peer) or {}).get(key))


def markdown(summary, link_prefix):
    """The tables; links start with link_prefix (the run directory as seen
    from the Markdown file)."""
    m = summary["machine"]
    scs = summary["scenarios"]
    link = lambda rel: f"{link_prefix}{rel}"  # noqa: E731
    runs_dir = link("raw/")
    server_cpu = m.get("server cpu", "?")
    load_cpu = m.get("loadtest cpu", "?")
    settings = m.get("settings", "")
    parts = dict(kv.split("=", 1) for kv in settings.split() if "=" in kv)
    lines = []
    w = lines.append
    w(f"Run [`{os.path.basename(summary['run_dir'].rstrip('/'))}`]({link('summary.md')}) "
      f"on {m.get('date', '?')}: `{summary['invocation']}`, git `{m.get('git', '?')}`.")
    w("")
    w(f"Machine: {m.get('Model name', '?')}, {m.get('nproc', '?')} CPUs "
      f"({m.get('Hypervisor vendor', 'bare metal')} guest), `{m.get('uname', '?')}`; "
      f"open files {m.get('open files (soft/hard)', '?')}; "
      f"rustc {m.get('rustc', '?').split(' ')[1] if m.get('rustc') else '?'}, "
      f"node {m.get('node', '?')}, uwebsockets {m.get('uwebsockets', '?')}, kafkajs {m.get('kafkajs', '?')}, "
      f"ws {m.get('ws', '?')}, {m.get('tansu', 'tansu ?')}. Server on CPU {server_cpu}; loadtest and the "
      f"broker on CPU {load_cpu}; a fresh tansu and topic ({parts.get('partitions', '?')} partitions) per run; "
      f"every consumer fetches with a {parts.get('max_wait_ms', '?')} ms maximum wait. "
      f"Raw outputs, every command and `lscpu`: [`raw/`]({runs_dir}) (kept on the machine that ran it; "
      f"git-ignored).")
    w("")
    w("Medians over the repeats. Ratios are fanout ÷ the peer: above 1 favours fanout for deliveries/s "
      "and deliveries per server CPU-second, below 1 for latency, memory and idle CPU.")

    sat = [sc for sc in scs if sc["mode"] == "sat" and any(s in sc["servers"] for s in MAIN)]
    if sat:
        w("")
        w("### Saturation: capacity and cost per delivery")
        w("")
        w("All three through the same broker. Deliveries/s is the capacity of the slower side; "
          "deliveries per server CPU-second is the server's cost whoever the bottleneck was.")
        w("")
        w("| scenario | deliveries/s fanout / uWS / ws | **÷ uWS** | **÷ ws** | deliveries per server CPU-s "
          "fanout / uWS / ws | **÷ uWS** | **÷ ws** | bottleneck fanout / uWS / ws |")
        w("|---|---:|---:|---:|---:|---:|---:|---|")
        for sc in sat:
            w(f"| {sc['name']}{failed_flag(sc)} | {three(sc, 'deliveries_per_sec', fsi)} | "
              f"**{ratio(sc, 'uws', 'deliveries_per_sec')}** | **{ratio(sc, 'ws', 'deliveries_per_sec')}** | "
              f"{three(sc, 'deliveries_per_server_cpu_s', fsi)} | "
              f"**{ratio(sc, 'uws', 'deliveries_per_server_cpu_s')}** | "
              f"**{ratio(sc, 'ws', 'deliveries_per_server_cpu_s')}** | {three(sc, 'bottleneck', str)} |")

    fixed = [sc for sc in scs if sc["mode"] == "fixed" and any(s in sc["servers"] for s in MAIN)]
    if fixed:
        w("")
        w("### Fixed rate: cost, latency and the kernel's share")
        w("")
        w("The offered load is events/s × N ÷ K deliveries/s; a server that delivered well below it "
          "fell behind (marked ✗ below 80%), and its latency is then queueing. "
          "Kernel share: system time ÷ (user + system time) of the server process over the load window "
          "(`/proc/<pid>/stat`): the part of its CPU spent in the kernel, mostly the TCP send path.")
        w("")
        w("| scenario | events/s | deliveries/s fanout / uWS / ws | deliveries per server CPU-s fanout / uWS / ws "
          "| **÷ uWS** | **÷ ws** | p99 fanout / uWS / ws | kernel share fanout / uWS / ws |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for sc in fixed:
            offered = sc["rate"] * sc["n"] / sc["k"]

            def kept(v, offered=offered):
                return "-" if v is None else fsi(v) + ("" if v >= 0.8 * offered else " ✗")

            w(f"| {sc['name']}{failed_flag(sc)} | {fsi(sc['rate'])} | {three(sc, 'deliveries_per_sec', kept)} | "
              f"{three(sc, 'deliveries_per_server_cpu_s', fsi)} | "
              f"**{ratio(sc, 'uws', 'deliveries_per_server_cpu_s')}** | "
              f"**{ratio(sc, 'ws', 'deliveries_per_server_cpu_s')}** | {three(sc, 'p99_us', flat)} | "
              f"{three(sc, 'kernel_share', fpct)} |")

    idle = [sc for sc in scs if sc["mode"] == "idle" and any(s in sc["servers"] for s in MAIN)]
    if idle:
        w("")
        w("### Idle: memory per connection and CPU with nothing to deliver")
        w("")
        w("N subscribed connections and no events. RSS per connection = (RSS once all are subscribed − "
          "RSS before the first connect) ÷ N, user-space memory only. Idle CPU: the server's CPU over the "
          "hold ÷ the hold (its Kafka consumer polling the broker, timers), in % of one core.")
        w("")
        w("| scenario | subscribed fanout / uWS / ws | RSS/conn fanout / uWS / ws | **÷ uWS** | **÷ ws** "
          "| idle CPU fanout / uWS / ws | kernel share |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for sc in idle:
            w(f"| {sc['name']}{failed_flag(sc)} | {three(sc, 'acked', fnum)} | {three(sc, 'rss_per_conn_bytes', fbytes)} | "
              f"**{ratio(sc, 'uws', 'rss_per_conn_bytes')}** | **{ratio(sc, 'ws', 'rss_per_conn_bytes')}** | "
              f"{three(sc, 'idle_cpu', fpct1)} | {three(sc, 'kernel_share', fpct)} |")

    extra = [sc for sc in scs if any(s in sc["servers"] for s in EXTRA)]
    if extra:
        w("")
        w("### Extra rows: the broker and the feed")
        w("")
        w("fanout on its embedded broker (librdkafka's mock cluster in fanout's process, on fanout's "
          "core; \"excl. broker\" takes its `rdk:mock` thread out) against fanout through tansu; the uWS "
          "peer fed straight down a WebSocket (the older method, no Kafka client) against the same peer "
          "on kafkajs. \"fanout ÷ row\" divides fanout-through-tansu by the row: for the embedded row "
          "that is the issue's \"through tansu within 20% of embedded\" (goal: ≥ 0.80× per CPU-s).")
        w("")
        w("| scenario | row | deliveries/s | deliveries per server CPU-s | excl. broker | **fanout ÷ row**, "
          "deliveries/s | **fanout ÷ row**, per CPU-s |")
        w("|---|---|---:|---:|---:|---:|---:|")
        for sc in extra:
            for s in ("fanout", "fanout-embedded", "uws", "uws-socket"):
                a = sc["servers"].get(s)
                if a is None:
                    continue
                r = sc["ratios"].get(s) or {}
                same = s == "fanout"
                w(f"| {sc['name']}{failed_flag(sc, (s,))} | {SERVER_NAMES[s]} | {fsi(a['deliveries_per_sec'])} | "
                  f"{fsi(a['deliveries_per_server_cpu_s'])} | {fsi(a['deliveries_per_server_cpu_s_ex_broker'])} | "
                  f"{'1×' if same else '**' + fx(r.get('deliveries_per_sec')) + '**'} | "
                  f"{'1×' if same else '**' + fx(r.get('deliveries_per_server_cpu_s')) + '**'} |")

    w("")
    w("### Per scenario")
    w("")
    w("deliveries/s: median (min–max). Latency: send by loadtest → receipt by the subscriber, median of "
      "each percentile over the runs; at saturation the events are sent in one burst, so latency there is "
      "queueing time, not service time. Kernel: the kernel's share of the server's CPU. Server CPU: the "
      "server's core while deliveries flowed (idle rows: over the hold). Load core: loadtest's plus the "
      "broker's CPU ÷ the delivery window. Other load: cores' worth of CPU used on the two benchmark cores "
      "by other processes.")
    w("")
    w("| scenario | server | events | deliveries/s | p50 | p99 | p99.9 | max | deliveries/CPU-s | kernel "
      "| RSS/conn | server CPU | load core | other load | bottleneck | audit |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for sc in scs:
        for s in SERVERS:
            a = sc["servers"].get(s)
            if a is None:
                continue
            name = f"[{sc['name']}]({link(sc['plot'])})" if sc.get("plot") else sc["name"]
            if sc["mode"] == "idle":
                events = "idle"
            elif sc["mode"] == "fixed":
                events = f"{fsi(sc['rate'])}/s"
            else:
                events = fsi(sc["events"])
            dps = (f"{fsi(a['deliveries_per_sec'])} ({fsi(a['deliveries_per_sec_min'])}–"
                   f"{fsi(a['deliveries_per_sec_max'])})" if a["deliveries_per_sec"] else "-")
            audit = f"{a['passed']}/{a['runs']} exact"
            if a["failures"]:
                audit += "; " + "; ".join(a["failures"])
            if a["perf"]:
                audit += "; profile: " + ", ".join(f"[{p}]({link('raw/' + p)})" for p in a["perf"])
            other = "-" if a["other_load_cores"] is None else f"{a['other_load_cores']:.2f}"
            util = a["idle_cpu"] if sc["mode"] == "idle" else a["server_util"]
            w(f"| {name} | {SERVER_NAMES[s]} | {events} | {dps} | {flat(a['p50_us'])} | {flat(a['p99_us'])} | "
              f"{flat(a['p999_us'])} | {flat(a['max_us'])} | {fsi(a['deliveries_per_server_cpu_s'])} | "
              f"{fpct(a['kernel_share'])} | {fbytes(a['rss_per_conn_bytes'])} | {fpct1(util)} | "
              f"{fpct(a['load_core_util'])} | {other} | {a['bottleneck']} | {audit} |")
    w("")
    w("<details><summary>Exact commands (repeat 1; ports are picked per run)</summary>")
    w("")
    w("```sh")
    for sc in scs:
        for s in SERVERS:
            for cmd in sc["commands"].get(s, []):
                w(cmd.split(": ", 1)[1] if ": " in cmd else cmd)
    w("```")
    w("")
    w("</details>")
    return "\n".join(lines) + "\n"


def update_doc(doc_path, block):
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        sys.exit(f"bench_summary: {doc_path} has no {BEGIN} ... {END} markers")
    text = text[: start + len(BEGIN)] + "\n" + block + text[end:]
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv):
    args = argv[1:]
    doc = None
    if "--doc" in args:
        i = args.index("--doc")
        doc = args[i + 1]
        del args[i : i + 2]
    if len(args) != 1:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    run_dir = args[0].rstrip("/")
    summary, reports = collect(run_dir)
    write_plots(summary, reports, run_dir)
    with open(os.path.join(run_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(run_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(f"# Benchmark run {os.path.basename(run_dir)}\n\n")
        f.write("Written by `scripts/bench.sh`; method in [BENCHMARKS.md](../../BENCHMARKS.md).\n\n")
        f.write(markdown(summary, ""))
    if doc:
        rel = os.path.relpath(run_dir, os.path.dirname(os.path.abspath(doc)) or ".")
        update_doc(doc, markdown(summary, rel + "/"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
