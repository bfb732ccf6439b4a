#!/usr/bin/env python3
"""The traffic of `cargo xtask bench --only lab` (docs/lab.md, "Benchmark"): Python 3, standard
library only. Each client mode prints one JSON line.

  serve HOST PORT                  echo/sink server (threads); a connection's first byte picks
                                   its kind: b"E" echoes every byte back, b"S" reads to EOF
                                   and answers the byte count (8 bytes, big-endian)
  connect HOST PORT N [USER PASS]  N sequential MySQL connections: TCP connect, read the
                                   greeting, log in when USER and PASS are given
                                   (mysql_native_password), send COM_QUIT, close
  query HOST PORT N USER PASS      one MySQL connection, N `SELECT 1` round trips
  pingpong HOST PORT N [SIZE]      one connection to `serve`, N SIZE-byte round trips (64)
  stream HOST PORT SECONDS         one connection to `serve`, bulk send for SECONDS; MB/s

`--sport BASE` (connect, query): the i-th connection binds source port BASE + i, so runs can
keep their four-tuples apart (the caller gives each run a block of its own).

Rates are per second of wall-clock time; latencies are in microseconds.
"""

import hashlib
import json
import socket
import struct
import sys
import threading
import time

CHUNK = 64 * 1024
COM_QUIT = b"\x01\x00\x00\x00\x01"
# CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION
# | CLIENT_PLUGIN_AUTH
CAPABILITIES = 0x1 | 0x200 | 0x2000 | 0x8000 | 0x80000


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += part
    return bytes(data)


def read_packet(sock):
    header = recv_exact(sock, 4)
    length = header[0] | header[1] << 8 | header[2] << 16
    return header[3], recv_exact(sock, length)


def write_packet(sock, seq, payload):
    sock.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload)


def native_password(password, scramble):
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(scramble + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix))


def scramble_of(greeting):
    """The 20-byte scramble of a protocol-10 greeting."""
    end = greeting.index(b"\x00", 1)  # server version
    pos = end + 1 + 4  # connection id
    part1 = greeting[pos : pos + 8]
    pos += 8 + 1 + 2 + 1 + 2 + 2  # filler, caps low, charset, status, caps high
    auth_len = greeting[pos]
    pos += 1 + 10
    part2 = greeting[pos : pos + max(13, auth_len - 8)]
    return (part1 + part2).rstrip(b"\x00")[:20]


def login(sock, user, password):
    seq, greeting = read_packet(sock)
    if greeting[:1] == b"\xff":
        raise ConnectionError(f"server error: {greeting[3:]!r}")
    token = native_password(password, scramble_of(greeting))
    response = (
        struct.pack("<IIB", CAPABILITIES, 1 << 24, 45)
        + bytes(23)
        + user.encode()
        + b"\x00"
        + bytes([len(token)])
        + token
        + b"mysql_native_password\x00"
    )
    write_packet(sock, seq + 1, response)
    seq, reply = read_packet(sock)
    if reply[:1] == b"\xfe":  # auth switch: plugin name, then a new scramble
        end = reply.index(b"\x00", 1)
        plugin = reply[1:end].decode()
        if plugin != "mysql_native_password":
            raise ConnectionError(f"auth switch to {plugin}")
        write_packet(sock, seq + 1, native_password(password, reply[end + 1 : end + 21]))
        seq, reply = read_packet(sock)
    if reply[:1] != b"\x00":
        raise ConnectionError(f"login failed: {reply!r}")


def summary(latencies, elapsed, **more):
    latencies.sort()
    n = len(latencies)
    out = {
        "count": n,
        "seconds": round(elapsed, 4),
        "rate": round(n / elapsed, 2) if elapsed > 0 else 0,
        "p50_us": round(latencies[n // 2] * 1e6, 1) if n else None,
        "p99_us": round(latencies[min(n - 1, n * 99 // 100)] * 1e6, 1) if n else None,
    }
    out.update(more)
    print(json.dumps(out))


def open_connection(host, port, sport=None, timeout=5):
    if sport is None:
        return socket.create_connection((host, port), timeout=timeout)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(timeout)
    sock.bind(("", sport))
    sock.connect((host, port))
    return sock


def connect(host, port, n, user=None, password=None, sport=None):
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        sock = open_connection(host, port, None if sport is None else sport + i)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if user is None:
            read_packet(sock)
        else:
            login(sock, user, password)
        sock.sendall(COM_QUIT)
        sock.close()
        latencies.append(time.perf_counter() - t)
    summary(latencies, time.perf_counter() - started, login=user is not None)


def query(host, port, n, user, password, sport=None):
    sock = open_connection(host, port, sport)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    login(sock, user, password)
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        write_packet(sock, 0, b"\x03SELECT 1")
        # Column count, the column, EOF, the row, EOF.
        eofs = 0
        while eofs < 2:
            _, payload = read_packet(sock)
            if payload[:1] == b"\xff":
                raise ConnectionError(f"query failed: {payload!r}")
            if payload[:1] == b"\xfe" and len(payload) < 9:
                eofs += 1
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    sock.sendall(COM_QUIT)
    sock.close()
    summary(latencies, elapsed)


def pingpong(host, port, n, size=64):
    sock = socket.create_connection((host, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(b"E")
    message = b"x" * size
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        sock.sendall(message)
        recv_exact(sock, size)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    sock.close()
    summary(latencies, elapsed, size=size)


def stream(host, port, seconds):
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"S")
    chunk = b"x" * CHUNK
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        sock.sendall(chunk)
        sent += CHUNK
    sock.shutdown(socket.SHUT_WR)
    (received,) = struct.unpack(">Q", recv_exact(sock, 8))
    elapsed = time.perf_counter() - started
    sock.close()
    print(
        json.dumps(
            {
                "bytes": received,
                "sent": sent,
                "seconds": round(elapsed, 4),
                "mb_per_s": round(received / elapsed / 1e6, 2),
            }
        )
    )


def handle(conn):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kind = conn.recv(1)
        if kind == b"E":
            while data := conn.recv(CHUNK):
                conn.sendall(data)
        elif kind == b"S":
            total = 0
            while data := conn.recv(CHUNK):
                total += len(data)
            conn.sendall(struct.pack(">Q", total))


def serve(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    mode, host, port, rest = argv[0], argv[1], int(argv[2]), argv[3:]
    sport = None
    if "--sport" in rest:
        at = rest.index("--sport")
        sport = int(rest[at + 1])
        del rest[at : at + 2]
    if mode == "serve":
        serve(host, port)
    elif mode == "connect":
        connect(host, port, int(rest[0]), *rest[1:3], sport=sport)
    elif mode == "query":
        query(host, port, int(rest[0]), rest[1], rest[2], sport=sport)
    elif mode == "pingpong":
        pingpong(host, port, int(rest[0]), *(int(r) for r in rest[1:2]))
    elif mode == "stream":
        stream(host, port, float(rest[0]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
