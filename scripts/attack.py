#!/usr/bin/env python3
"""Attack a running fanout the way a hostile client would, and measure what
it cost the server: peak RSS growth and CPU time, from /proc/PID.

Usage: scripts/attack.py ADDR PID ATTACK
  ADDR    host:port fanout listens on (loopback)
  PID     fanout's process id (for /proc/PID)
  ATTACK  one of:
    ping-flood      3,000,000 Ping frames (125-byte payload), never read
    filter-cpu      60 subscribes of 9,000 short course ids each (~58 KB)
    filter-memory   256 subscribes of one 60 KB course id each, never read
    echo-memory     256 subscribes adding one 128-byte value each, made of
                    control characters (the echo escapes each to 6 bytes),
                    paced under the rate limit (45/s), never read
    byte-frame      a 32 KiB subscribe sent one byte per write, then the same
                    message as 32,000 one-byte fragments
    slowloris       1,000 connections dribbling header bytes, one a second
                    per connection, until the server cuts them off
    close-storm     15,000 connections subscribed to one key, closed at once

Prints one line: the attack, what the server did, peak RSS growth of the
process, and CPU time of its shard threads (those that serve clients).
scripts/hardening.sh runs every attack against a fresh server. Python 3
standard library only; the peak RSS reset (clear_refs) needs Linux 4.0+ and
a process we may write to (our own user's).
"""
import os
import socket
import struct
import sys
import time

MIB = 1024 * 1024
UPGRADE = (
    b"GET /ws/availability HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
MASK = b"\x01\x02\x03\x04"


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame."""
    head = bytes([opcode | (0x80 if fin else 0)])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))
    return head + MASK + masked


def text(message: str) -> bytes:
    return frame(0x1, message.encode())


class Server:
    """What /proc says about the fanout process."""

    def __init__(self, addr: str, pid: int):
        host, port = addr.rsplit(":", 1)
        self.addr = (host, int(port))
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def status_kib(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field} in /proc/{self.pid}/status")

    def rss(self) -> int:
        return self.status_kib("VmRSS:") * 1024

    def peak(self) -> int:
        return self.status_kib("VmHWM:") * 1024

    def reset_peak(self) -> None:
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def cpu(self) -> float:
        """CPU time of the shard threads (`shard-*`), which handle clients:
        the process's other threads (Kafka, the embedded broker) idle at
        ~0.1 s/s here and would blur the attack's cost."""
        total = 0
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            if name.startswith("shard-"):
                fields = stat.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / self.tick

    def settle(self, quiet: float = 0.02, window: float = 0.5, limit: float = 120.0) -> None:
        """Waits until the server spends less than `quiet` s of CPU per `window` s."""
        deadline = time.time() + limit
        last = self.cpu()
        while time.time() < deadline:
            time.sleep(window)
            now = self.cpu()
            if now - last < quiet:
                return
            last = now

    def connect(self, rcvbuf: int | None = None) -> socket.socket:
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect(self.addr)
        return s

    def upgrade(self, rcvbuf: int | None = None) -> socket.socket:
        s = self.connect(rcvbuf)
        s.settimeout(10)
        s.sendall(UPGRADE)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        op, payload = read_frame(s)
        assert payload.startswith(b'{"type":"connected"'), payload
        return s

    def metrics(self) -> list[str]:
        s = self.connect()
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        body = b""
        while chunk := s.recv(65536):
            body += chunk
        s.close()
        return body.decode().splitlines()

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.metrics():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def closes(self) -> dict[str, int]:
        """Close frames the server sent, by code (`fanout_closes_total`)."""
        out = {}
        for line in self.metrics():
            if line.startswith("fanout_closes_total{") and not line.endswith(" 0"):
                code = line.split('code="')[1].split('"')[0]
                out[code] = out.get(code, 0) + int(float(line.rsplit(" ", 1)[1]))
        return out


class Reader:
    """Server frames from a socket, read in large chunks (millions of small
    frames must not cost a syscall each)."""

    def __init__(self, s: socket.socket):
        self.s = s
        self.buf = bytearray()
        self.at = 0

    def exact(self, n: int) -> bytes:
        while len(self.buf) - self.at < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            del self.buf[: self.at]
            self.at = 0
            self.buf += chunk
        out = bytes(self.buf[self.at : self.at + n])
        self.at += n
        return out

    def frame(self) -> tuple[int, bytes]:
        b0, b1 = self.exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.exact(8))[0]
        return b0 & 0x0F, self.exact(n)


def read_frame(s: socket.socket) -> tuple[int, bytes]:
    """One frame, byte-exact (no read-ahead): for the upgrade."""
    b0, b1 = read_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read_exact(s, 8))[0]
    return b0 & 0x0F, read_exact(s, n)


def read_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def drain(s: socket.socket) -> str:
    """Reads frames until a close (its code) or the end of the stream."""
    s.settimeout(10)
    reader = Reader(s)
    frames = 0
    try:
        while True:
            op, payload = reader.frame()
            if op == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                return f"closed with {code} after {frames} frames"
            frames += 1
    except (ConnectionError, OSError):
        return f"connection ended after {frames} frames, no close frame"


def still_open(s: socket.socket) -> bool:
    try:
        s.sendall(text('{"type":"ping"}'))
        return True
    except OSError:
        return False


def ping_flood(server: Server) -> str:
    s = server.upgrade()
    batch = frame(0x9, b"p" * 125) * 10_000
    sent = 0
    try:
        for _ in range(300):
            s.sendall(batch)
            sent += 10_000
    except OSError:
        pass
    server.settle()
    if sent == 3_000_000 and still_open(s):
        reader = Reader(s)
        pongs = 0
        try:
            while True:
                op, payload = reader.frame()
                if op == 0xA:
                    pongs += 1
                elif op == 0x8:
                    return f"closed with {struct.unpack('>H', payload[:2])[0]} after {pongs} pongs"
                elif op == 0x1 and payload.startswith(b'{"type":"pong"'):
                    return f"open; {pongs} pongs answered {sent} pings"
        except (ConnectionError, OSError):
            return f"connection ended after {pongs} pongs"
    return f"{drain(s)} ({sent} pings sent)"


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        out += digits[n % 36]
        n //= 36
        if n == 0:
            return out


def filter_cpu(server: Server) -> str:
    s = server.upgrade()
    ids = ",".join(f'"{base36(i)}"' for i in range(9000))
    message = text('{"type":"subscribe","filters":{"course_id":[' + ids + "]}}")
    for _ in range(60):
        s.sendall(message)
    server.settle()
    s.settimeout(2)
    reader = Reader(s)
    codes: dict[str, int] = {}
    try:
        while True:
            op, payload = reader.frame()
            if op == 0x8:
                codes["close"] = struct.unpack(">H", payload[:2])[0]
                break
            if op != 0x1:
                continue  # the server's heartbeat pings
            kind = payload.split(b'"code":"')[1].split(b'"')[0] if b'"code"' in payload else payload[:20]
            codes[kind.decode()] = codes.get(kind.decode(), 0) + 1
    except (socket.timeout, ConnectionError, OSError):
        pass
    return f"replies {codes}"


def filter_memory(server: Server) -> str:
    s = server.upgrade()
    try:
        for i in range(256):
            value = f"{i}-" + "v" * 60_000
            s.sendall(text('{"type":"subscribe","filters":{"course_id":"' + value + '"}}'))
    except OSError:
        pass
    server.settle()
    return drain_or_open(s)


def echo_memory(server: Server) -> str:
    s = server.upgrade()
    try:
        for i in range(256):
            value = f"{i:03}" + "\\u0001" * 125
            s.sendall(text('{"type":"subscribe","filters":{"course_id":"' + value + '"}}'))
            time.sleep(1 / 45)
    except OSError:
        pass
    server.settle()
    return drain_or_open(s)


def drain_or_open(s: socket.socket) -> str:
    if still_open(s):
        s.settimeout(3)
        reader = Reader(s)
        frames = 0
        try:
            while True:
                op, _ = reader.frame()
                if op == 0x8:
                    return f"closed after {frames} replies"
                frames += 1
        except (socket.timeout, ConnectionError, OSError):
            return f"open; {frames} replies"
    return drain(s)


def byte_frame(server: Server) -> str:
    s = server.upgrade()
    message = ('{"type":"subscribe","filters":{"course_id":"C1"},"pad":"' + "p" * 32768 + '"}').encode()
    for b in text(message.decode()):
        s.send(bytes([b]))
    op, first = Reader(s).frame()
    fragments = [frame(0x1, message[:1], fin=False)]
    fragments += [frame(0x0, message[i : i + 1], fin=i == len(message) - 1) for i in range(1, len(message))]
    s.sendall(b"".join(fragments))
    op, second = read_frame(s)
    ok = all(r.startswith(b'{"type":"subscribed"') for r in (first, second))
    return f"both answered {'subscribed' if ok else (first[:40], second[:40])}"


def slowloris(server: Server) -> str:
    socks = []
    for _ in range(1000):
        s = server.connect()
        s.sendall(b"GET /ws/availability HTTP/1.1\r\nHost: t\r\n")
        s.setblocking(False)
        socks.append(s)
    started = time.time()
    while socks and time.time() - started < 120:
        alive = []
        for s in socks:
            try:
                if s.recv(1) == b"":
                    continue
            except BlockingIOError:
                pass
            except OSError:
                continue
            try:
                s.send(b"x")
                alive.append(s)
            except OSError:
                pass
        socks = alive
        time.sleep(1)
    return f"all 1000 cut off after {time.time() - started:.1f} s" if not socks else f"{len(socks)} still open"


def close_storm(server: Server) -> str:
    hello = UPGRADE + text('{"type":"subscribe","filters":{"course_id":"POPULAR"}}')
    socks = []
    for _ in range(15_000):
        s = server.connect()
        s.sendall(hello)
        socks.append(s)
    while server.metric("fanout_subscription_entries") < len(socks):
        time.sleep(0.1)
    server.settle()
    cpu = server.cpu()
    started = time.time()
    for s in socks:
        s.close()
    while server.metric("fanout_subscription_entries") > 0 or server.metric("fanout_connections") > 0:
        time.sleep(0.01)
    return (
        f"15000 subscribers of one key gone from the index in {time.time() - started:.2f} s, "
        f"{server.cpu() - cpu:.2f} s CPU"
    )


ATTACKS = {
    "ping-flood": ping_flood,
    "filter-cpu": filter_cpu,
    "filter-memory": filter_memory,
    "echo-memory": echo_memory,
    "byte-frame": byte_frame,
    "slowloris": slowloris,
    "close-storm": close_storm,
}


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[3] not in ATTACKS:
        sys.exit(__doc__)
    server = Server(sys.argv[1], int(sys.argv[2]))
    server.settle()
    rss, cpu = server.rss(), server.cpu()
    server.reset_peak()
    outcome = ATTACKS[sys.argv[3]](server)
    server.settle()
    grown = max(server.peak() - rss, 0)
    cpu = server.cpu() - cpu
    closes = server.closes()
    print(f"{sys.argv[3]}: {outcome}; server closes {closes}; peak RSS +{grown / MIB:.1f} MiB; shard CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
