#!/usr/bin/env bash
# Usage: scripts/tune-host.sh [--apply] [--connections N]
#
# Prints the kernel settings and process limits a dedicated fanout host needs
# for many WebSocket connections, each with the reason and the current value.
# With --apply (as root) it sets them for the running system; to make them
# permanent, copy the printed lines into /etc/sysctl.d/90-fanout.conf and the
# limits into the service unit (LimitNOFILE=, LimitMEMLOCK=).
#
#   scripts/tune-host.sh                     # show what would change
#   sudo scripts/tune-host.sh --apply        # apply for 1M connections
#   scripts/tune-host.sh --connections 200000
set -euo pipefail
cd "$(dirname "$0")/.."

apply=false
connections=1000000
while [ $# -gt 0 ]; do
    case "$1" in
        --apply) apply=true ;;
        --connections) connections="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "tune-host: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$connections" in
    ''|*[!0-9]*) echo "tune-host: --connections takes a number" >&2; exit 2 ;;
esac

# Every connection is a file descriptor; keep headroom for listeners,
# Kafka, Redis and the io_uring rings.
files=$((connections + connections / 10 + 1024))
# TCP memory is counted in 4 KiB pages: budget ~16 KiB of socket buffers per
# idle connection, more under load (the kernel autotunes within these).
pages_low=$((connections * 2))
pages_pressure=$((connections * 4))
pages_high=$((connections * 8))

status=0
setting() { # name wanted why [atleast]
    local name=$1 wanted=$2 why=$3 mode=${4:-exact} path current
    path="/proc/sys/${name//.//}"
    current=$(tr -s '\t' ' ' < "$path" 2>/dev/null || echo "?")
    # A floor never lowers what the host already has.
    if [ "$mode" = atleast ] && [[ "$current" =~ ^[0-9]+$ ]] && [ "$current" -gt "$wanted" ]; then
        wanted=$current
    fi
    printf '%-34s = %-24s # now: %-20s %s\n' "$name" "$wanted" "$current" "$why"
    if $apply && [ "$current" != "$wanted" ]; then
        if ! sysctl -q -w "$name=$wanted" >/dev/null 2>&1; then
            echo "  ! could not set $name (not root, or not allowed in this container)" >&2
            status=1
        fi
    fi
}

echo "# fanout host tuning for $connections connections"
echo "# sysctl (copy into /etc/sysctl.d/90-fanout.conf):"
setting fs.file-max "$((files * 2))" "system-wide open files: every socket is one" atleast
setting fs.nr_open "$((files * 2))" "ceiling for a process's RLIMIT_NOFILE" atleast
setting net.core.somaxconn 65535 "accept backlog: reconnect storms after a deploy" atleast
setting net.ipv4.tcp_max_syn_backlog 65535 "half-open connections during a storm" atleast
setting net.core.netdev_max_backlog 65536 "packets queued per core before the stack drops" atleast
setting net.ipv4.ip_local_port_range "1024 65535" "ephemeral ports: load generators and upstream clients"
setting net.ipv4.tcp_mem "$pages_low $pages_pressure $pages_high" "TCP buffer pages (4 KiB): low, pressure, high"
setting net.ipv4.tcp_rmem "4096 16384 4194304" "small default receive buffer: idle clients send little"
setting net.ipv4.tcp_wmem "4096 16384 4194304" "small default send buffer; autotuning grows busy sockets"
setting net.ipv4.tcp_fin_timeout 15 "release closed sockets sooner"
setting net.ipv4.tcp_tw_reuse 1 "reuse TIME_WAIT ports for outgoing connections"

echo
echo "# process limits (systemd: LimitNOFILE=$files, LimitMEMLOCK=infinity):"
printf '%-34s = %-24s # now: %-20s %s\n' "ulimit -n" "$files" "$(ulimit -n)" "one descriptor per connection"
printf '%-34s = %-24s # now: %-20s %s\n' "ulimit -l" "unlimited" "$(ulimit -l)" \
    "glommio locks io_uring memory: >= 1 MiB per shard"
if $apply; then
    ulimit -n "$files" 2>/dev/null || { echo "  ! could not raise ulimit -n in this shell" >&2; status=1; }
    ulimit -l unlimited 2>/dev/null || { echo "  ! could not raise ulimit -l in this shell" >&2; status=1; }
    echo "# limits apply to this shell only; set them in the service unit" >&2
fi

echo
echo "# placement: fanout --ingest-core 0 (default) and one shard per other core;"
echo "# keep IRQs of the NIC off the shard cores (irqbalance --banirq, or smp_affinity)."
exit $status
