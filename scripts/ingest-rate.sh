#!/usr/bin/env bash
# Usage: scripts/ingest-rate.sh [-s RECORD_SIZE] [-d FILL_DURATION] [-p PARTITIONS]
#
# Measures how fast one fanout instance reads the whole stream from a
# separate Kafka-protocol broker (tansu, from scripts/deps-up.sh): records/s
# and MiB/s from fetch to hand-off to the shards, with no clients. Each
# instance of a scaled-out deployment reads every record (README "Scaling
# out"), so this is the stream rate one instance can follow.
#
# tansu's perf producer first fills PARTITIONS partitions for FILL_DURATION
# with records of RECORD_SIZE random bytes (fanout counts them and skips
# them as invalid JSON: the Kafka side is all there, decoding costs a failed
# parse); then fanout starts from the earliest offsets and /metrics is
# sampled every 50 ms while it works through the backlog. The rate is taken
# over the samples where it was consuming. tansu runs on core 0, fanout on
# core 1; the CPU of each over that window is printed too (a process near
# 100% of its core is the bottleneck), with fanout's records per CPU-second,
# the figure that survives a busy machine, and the load average. Loopback
# only; everything started is stopped on exit.
#
#   scripts/ingest-rate.sh                 # 1 KiB records, 6 partitions, 5 s fill
#   scripts/ingest-rate.sh -s 256 -d 10
set -euo pipefail
cd "$(dirname "$0")/.."

size=1024 fill=5s partitions=6
while getopts "s:d:p:h" opt; do
    case "$opt" in
        s) size=$OPTARG ;;
        d) fill=$OPTARG ;;
        p) partitions=$OPTARG ;;
        *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
done

tansu=${FANOUT_TANSU:-$HOME/.cache/fanout/tansu/bin/tansu}
[ -x "$tansu" ] || { echo "ingest-rate: no tansu at $tansu (run scripts/deps-up.sh)" >&2; exit 2; }
cargo build --release -q -p fanout

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
broker_port=$(free_port)
fanout_port=$(free_port)
broker="tcp://127.0.0.1:$broker_port"

# tansu reads .env from its working directory: start it from an empty one.
(cd "$work" && exec taskset -c 0 "$tansu" broker --listener-url "$broker" \
    --advertised-listener-url "$broker" --storage-engine memory://tansu/ > "$work/tansu.log" 2>&1) &
tansu_pid=$!
pids+=($tansu_pid)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break
    sleep 0.1
done
(cd "$work" && "$tansu" topic create booking.created --broker "$broker" --partitions "$partitions" > /dev/null)

echo "ingest-rate: filling $partitions partitions with $size-byte records for $fill"
fillers=()
for partition in $(seq 0 $((partitions - 1))); do
    (cd "$work" && exec taskset -c 0 "$tansu" perf --broker "$broker" booking.created produce \
        --partition "$partition" --batch-size 100 --record-size "$size" --duration "$fill" \
        > "$work/perf-$partition.log" 2>&1) &
    fillers+=($!)
done
for pid in "${fillers[@]}"; do wait "$pid"; done

taskset -c 1 target/release/fanout --kafka-brokers "127.0.0.1:$broker_port" --topics booking.created \
    --kafka-opt auto.offset.reset=earliest --kafka-opt fetch.wait.max.ms=1 \
    --no-pin --shards 1 --listen 127.0.0.1 --port "$fanout_port" > "$work/fanout.out" 2> "$work/fanout.err" &
fanout_pid=$!
pids+=($fanout_pid)

python3 - "$fanout_port" "$fanout_pid" "$tansu_pid" "$size" <<'EOF'
import os, sys, time, urllib.request

port, fanout_pid, tansu_pid, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tick = 100  # clock ticks per second (getconf CLK_TCK)

def consumed():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("fanout_events_consumed_total "):
            return int(float(line.split()[1]))
    return None

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

samples = []  # (time, consumed, fanout cpu, tansu cpu)
idle_since = None
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    count = consumed()
    now = time.monotonic()
    if count is not None:
        samples.append((now, count, cpu_seconds(fanout_pid), cpu_seconds(tansu_pid)))
        moving = len(samples) > 1 and count != samples[-2][1]
        if count > 0 and not moving:
            idle_since = idle_since or now
            if now - idle_since > 2:
                break
        elif moving:
            idle_since = None
    time.sleep(0.05)

# From the last sample before any record was consumed to the first one that
# has them all: at most one sample interval more than the work took.
final = samples[-1][1]
zero = [i for i, s in enumerate(samples) if s[1] == 0]
start = zero[-1] if zero else 0
end = next(i for i, s in enumerate(samples) if s[1] == final)
if final == 0 or end <= start:
    sys.exit("ingest-rate: nothing consumed while sampled (see fanout's log, or fill longer with -d)")
first, last = samples[start], samples[end]
elapsed = last[0] - first[0]
records = last[1] - first[1]
rate = records / elapsed
print(f"records: {records} of {size} B in {elapsed:.2f} s ({final} in the topic)")
print(f"ingest: {rate:,.0f} records/s, {rate * size / 2**20:,.1f} MiB/s of payload")
fanout_cpu = (last[2] - first[2]) / elapsed
print(f"cpu over that window: fanout {fanout_cpu:.0%} of a core, "
      f"tansu {(last[3] - first[3]) / elapsed:.0%} of a core")
if fanout_cpu > 0:
    print(f"per fanout CPU-second: {rate / fanout_cpu:,.0f} records, "
          f"{rate * size / 2**20 / fanout_cpu:,.1f} MiB")
print(f"load average: {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores")
EOF
