#!/usr/bin/env python3
"""Verdicts of one Autobahn fuzzingclient run (kosoku), checked and summed up.

Usage: scripts/autobahn_summary.py REPORT_DIR [--doc docs/autobahn.md]

Reads REPORT_DIR/index.json (written by `kosoku -o REPORT_DIR`), prints the
count per verdict and every case that is not plain OK, and exits 1 unless
every case passed: behaviour OK, NON-STRICT or INFORMATIONAL, and a closing
handshake verdict of OK or INFORMATIONAL. With --doc, also writes that file:
the case -> behaviour summary kept in the repository.

Python 3 standard library only.
"""

import collections
import json
import sys

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}

# Autobahn's names for its case groups.
GROUPS = {
    "1.1": "Framing: text messages",
    "1.2": "Framing: binary messages",
    "2": "Pings and pongs",
    "3": "Reserved bits",
    "4.1": "Opcodes: reserved non-control",
    "4.2": "Opcodes: reserved control",
    "5": "Fragmentation (with interleaved control frames)",
    "6.1": "UTF-8: valid, zero-length fragments",
    "6.2": "UTF-8: valid, fragmented on code points",
    "6.3": "UTF-8: invalid, differently fragmented",
    "6.4": "UTF-8: fail fast on invalid text",
    "6.5": "UTF-8: valid sequences",
    "6.6": "UTF-8: every prefix of a valid string",
    "6.7": "UTF-8: first sequence of each length",
    "6.8": "UTF-8: 5- and 6-byte sequences (invalid)",
    "6.9": "UTF-8: last sequence of each length",
    "6.10": "UTF-8: last 5- and 6-byte sequences (invalid)",
    "6.11": "UTF-8: other boundary conditions",
    "6.12": "UTF-8: unexpected continuation bytes",
    "6.13": "UTF-8: lonely start bytes",
    "6.14": "UTF-8: last continuation byte missing",
    "6.15": "UTF-8: concatenated incomplete sequences",
    "6.16": "UTF-8: impossible bytes",
    "6.17": "UTF-8: overlong ASCII",
    "6.18": "UTF-8: maximal overlong sequences",
    "6.19": "UTF-8: overlong NUL",
    "6.20": "UTF-8: single UTF-16 surrogates",
    "6.21": "UTF-8: paired UTF-16 surrogates",
    "6.22": "UTF-8: non-characters (valid)",
    "6.23": "UTF-8: specials",
    "7.1": "Close: basic behaviour",
    "7.3": "Close: payload length",
    "7.5": "Close: reason not UTF-8",
    "7.7": "Close: valid codes",
    "7.9": "Close: invalid codes",
    "7.13": "Close: codes above 4999 (informational)",
    "9.1": "Limits: text message, growing to 16 MiB",
    "9.2": "Limits: binary message, growing to 16 MiB",
    "9.3": "Limits: 4 MiB text in fragments of 64 B to 4 MiB",
    "9.4": "Limits: 4 MiB binary in fragments of 64 B to 4 MiB",
    "9.5": "Limits: 1 MiB text in TCP chops of 64 B to 2 KiB",
    "9.6": "Limits: 1 MiB binary in TCP chops of 64 B to 2 KiB",
    "9.7": "Limits: 1000 text round trips, 0 B to 16 KiB",
    "9.8": "Limits: 1000 binary round trips, 0 B to 16 KiB",
    "10.1": "Auto-fragmentation",
}

# Why a case is not plain OK (kept next to the code that decides it).
NOTES = {
    "6.4.3": "Invalid UTF-8 inside one frame that arrives in pieces is found "
    "when the frame is complete, not at the piece (src/shard/input.rs checks "
    "text per frame and per fragment; a frame is bounded by "
    "--max-message-bytes). RFC 6455 §8.1 only requires failing; Autobahn "
    "calls fail-fast within a frame OK and at its end NON-STRICT.",
    "6.4.4": "As 6.4.3.",
    "7.1.6": "A 256 KiB message, a short one, then a close, back to back: "
    "the RFC leaves open whether the first is answered. fanout echoes both, "
    "then closes (what was queued before a close is sent).",
    "7.13.1": "Code 5000: no range above 4999 is defined (RFC 6455 §7.4.2); "
    "fanout fails the connection with 1002. Informational by design of the "
    "suite.",
    "7.13.2": "Code 65535: as 7.13.1.",
}


def case_key(case_id):
    return [int(part) for part in case_id.split(".")]


def group_of(case_id):
    parts = case_id.split(".")
    two = ".".join(parts[:2])
    return two if two in GROUPS else parts[0]


def load(report_dir):
    with open(f"{report_dir}/index.json") as f:
        index = json.load(f)
    if len(index) != 1:
        sys.exit(f"autobahn_summary: expected one server in {report_dir}/index.json, got {len(index)}")
    (cases,) = index.values()
    return dict(sorted(cases.items(), key=lambda kv: case_key(kv[0])))


def details(report_dir, result):
    """The case's own report (description, result), if kosoku wrote it."""
    try:
        with open(f"{report_dir}/{result['reportfile']}") as f:
            return json.load(f)
    except (KeyError, OSError, ValueError):
        return {}


def verdict(result):
    behavior, close = result["behavior"], result["behaviorClose"]
    return behavior if close in (behavior, "OK") else f"{behavior} / close {close}"


def passes(result):
    return result["behavior"] in PASSING and result["behaviorClose"] in PASSING_CLOSE


def doc(cases, report_dir):
    counts = collections.Counter(r["behavior"] for r in cases.values())
    groups = collections.OrderedDict()
    for case_id, result in cases.items():
        groups.setdefault(group_of(case_id), []).append((case_id, result))
    lines = [
        "# RFC 6455 conformance: Autobahn fuzzingclient",
        "",
        "Written by `scripts/autobahn_summary.py` from a `scripts/autobahn.sh` run",
        "(the README's test command runs it too). The Autobahn|Testsuite",
        "fuzzingclient (its case files, run by `kosoku`) drives `fanout-echo`:",
        "the engine's own upgrade, frame parsing, connection task and close",
        "handshake, with an echo handler in place of the subscribe protocol",
        "(`--features conformance`; see `src/bin/fanout-echo.rs`). Cases 1.* to",
        "10.*; 12.* and 13.* are compression (permessage-deflate), which fanout",
        "does not negotiate.",
        "",
        f"**{len(cases)} cases: {', '.join(f'{n} {v}' for v, n in counts.most_common())}.** A case",
        "passes when it is OK, NON-STRICT (allowed, short of a",
        "SHOULD) or INFORMATIONAL (the RFC leaves it open); `scripts/autobahn.sh`",
        "fails otherwise.",
        "",
        "## Cases that are not plain OK",
        "",
        "| case | behaviour | close code sent | why |",
        "|---|---|---|---|",
    ]
    for case_id, result in cases.items():
        if result["behavior"] == "OK" and result["behaviorClose"] == "OK":
            continue
        note = NOTES.get(case_id) or details(report_dir, result).get("description", "").replace("\n", " ")
        lines.append(f"| {case_id} | {verdict(result)} | {result.get('remoteCloseCode')} | {note} |")
    lines += [
        "",
        "## Every case, by group",
        "",
        "| group | what it checks | cases | behaviour |",
        "|---|---|---|---|",
    ]
    for group, members in groups.items():
        first, last = members[0][0], members[-1][0]
        span = first if first == last else f"{first} – {last}"
        tally = collections.Counter(verdict(r) for _, r in members)
        if len(tally) == 1:
            behaviour = f"all {next(iter(tally))}"
        else:
            odd = ", ".join(f"{c}: {verdict(r)}" for c, r in members if verdict(r) != "OK")
            behaviour = f"{tally['OK']} OK; {odd}"
        lines.append(f"| {group} | {GROUPS.get(group, '')} | {span} ({len(members)}) | {behaviour} |")
    lines.append("")
    return "\n".join(lines)


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    report_dir = args[0]
    doc_path = args[args.index("--doc") + 1] if "--doc" in args else None
    cases = load(report_dir)
    counts = collections.Counter(verdict(r) for r in cases.values())
    print(f"autobahn: {len(cases)} cases: " + ", ".join(f"{n} {v}" for v, n in counts.most_common()))
    failing = [case_id for case_id, result in cases.items() if not passes(result)]
    for case_id, result in cases.items():
        if verdict(result) != "OK":
            mark = "FAIL" if case_id in failing else "    "
            why = details(report_dir, result).get("result", "")
            print(f"  {mark} {case_id}: {verdict(result)} (close {result.get('remoteCloseCode')}) {why}")
    if doc_path:
        with open(doc_path, "w") as f:
            f.write(doc(cases, report_dir))
        print(f"autobahn: wrote {doc_path}")
    if not cases:
        sys.exit("autobahn: no case ran")
    if failing:
        sys.exit(f"autobahn: {len(failing)} case(s) failed: {' '.join(failing)} (report: {report_dir}/index.html)")


if __name__ == "__main__":
    main()
