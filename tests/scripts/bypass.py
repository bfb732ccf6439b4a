#!/usr/bin/env python3
"""Ways around Tollgate, and the instruments that tell whether one got through (docs/lab.md).

Standard library only; runs as root inside a lab host (`tests/lab/lab.sh exec TAG HOST ...`).

Instruments (on the database host):
  sniff --iface eth0 --out FILE [--seconds N]
      AF_PACKET capture of every IPv4/IPv6 packet on IFACE; prints "ready" once capturing,
      stops after N seconds or on SIGTERM/SIGINT and writes FILE: a JSON list of
      {"dir": "in"|"out", "family": 4|6, "src", "dst", "proto", "sport", "dport", "flags",
       "seq", "fragment"} (sport/dport/flags/seq only for a TCP/UDP header that is present).
  listen-tcp PORT | listen-udp PORT
      dual-stack servers that answer "pong" (TCP: on accept; UDP: to every datagram); print
      "ready" once bound, run until killed.

Techniques (each prints one JSON line {"technique", "reached", "detail"} and exits 0 either
way; each finishes within about 3 s):
  tcp [--bind-port P] HOST PORT     connect and read the first bytes (a MySQL greeting or
                                    "pong"); reached = bytes came back
  udp HOST PORT                     send "ping"; reached = an answer came back
  raw-syn [--src SRC] HOST PORT     a hand-made TCP SYN through a raw socket (IP_HDRINCL /
                                    IPPROTO_RAW), optionally from a spoofed source; reached = a
                                    SYN-ACK came back (never for a spoofed source: the answer
                                    goes there, so the sniffer decides)
  frag [--src SRC] HOST PORT        the same SYN in two fragments (IPv4 fragments, or an IPv6
                                    fragment header); reached = a SYN-ACK came back
  icmp HOST                         an echo request; reached = the echo reply came back
  mapped-syn [--src SRC] HOST PORT  a hand-made IPv6 SYN (IPPROTO_RAW) whose destination on the
                                    wire stays the IPv4-mapped HOST (::ffff:a.b.c.d), routed by
                                    this host's IPv6 table (the lab's client routes
                                    ::ffff:0:0/96 via the bastion); reached = a SYN-ACK came
                                    back; detail.icmp_error: an ICMPv6 error about it (from a
                                    router that would not forward it), or null
"""

import argparse
import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

TIMEOUT = 1.5  # seconds to wait for an answer; every technique stays under 3 s in all

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
TCP_FLAGS = "FSRPAUEC"  # bit 0 = FIN ... bit 7 = CWR


def report(technique, reached, **detail):
    print(json.dumps({"technique": technique, "reached": bool(reached), "detail": detail}))
    sys.stdout.flush()


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def flags_text(bits):
    return "".join(name for i, name in enumerate(TCP_FLAGS) if bits & (1 << i))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# ---------------------------------------------------------------------------------------------
# Parsing (the sniffer, and answers read from raw sockets)
# ---------------------------------------------------------------------------------------------

IPV6_EXTENSIONS = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH
IPV6_FRAGMENT = 44


def parse_transport(proto, data, record):
    if proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP) and len(data) >= 4:
        record["sport"], record["dport"] = struct.unpack("!HH", data[:4])
        if proto == socket.IPPROTO_TCP and len(data) >= 14:
            record["seq"] = struct.unpack("!I", data[4:8])[0]
            record["flags"] = flags_text(data[13])


def parse_ip(packet):
    """A summary of an IPv4 or IPv6 packet (starting at the IP header), or None."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        frag = struct.unpack("!H", packet[6:8])[0]
        more, offset = bool(frag & 0x2000), frag & 0x1FFF
        record = {
            "family": 4,
            "src": socket.inet_ntop(socket.AF_INET, packet[12:16]),
            "dst": socket.inet_ntop(socket.AF_INET, packet[16:20]),
            "proto": packet[9],
            "fragment": more or offset != 0,
        }
        if offset == 0:
            parse_transport(packet[9], packet[ihl:], record)
        return record
    if version == 6 and len(packet) >= 40:
        record = {
            "family": 6,
            "src": socket.inet_ntop(socket.AF_INET6, packet[8:24]),
            "dst": socket.inet_ntop(socket.AF_INET6, packet[24:40]),
            "fragment": False,
        }
        proto, rest, first = packet[6], packet[40:], True
        while len(rest) >= 8:
            if proto == IPV6_FRAGMENT:
                record["fragment"] = True
                first = struct.unpack("!H", rest[2:4])[0] >> 3 == 0
                proto, rest = rest[0], rest[8:]
            elif proto in IPV6_EXTENSIONS:
                length = (rest[1] + 2) * 4 if proto == 51 else (rest[1] + 1) * 8
                proto, rest = rest[0], rest[length:]
            else:
                break
        record["proto"] = proto
        if first:
            parse_transport(proto, rest, record)
        return record
    return None


# ---------------------------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------------------------


def sniff(args):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    deadline = time.monotonic() + args.seconds
    packets = []
    print("ready")
    sys.stdout.flush()
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            readable, _, _ = select.select([sock], [], [], 0.05)
        except InterruptedError:
            continue
        if not readable:
            continue
        frame, address = sock.recvfrom(65535)
        ethertype = address[1]
        if ethertype not in (0x0800, 0x86DD):
            continue
        # SOCK_RAW on a veth: a 14-byte Ethernet header comes first.
        record = parse_ip(frame[14:])
        if record is None:
            continue
        record["dir"] = "out" if address[2] == PACKET_OUTGOING else "in"
        packets.append(record)
    # Drain what is already queued.
    sock.setblocking(False)
    try:
        while True:
            frame, address = sock.recvfrom(65535)
            if address[1] in (0x0800, 0x86DD) and (record := parse_ip(frame[14:])):
                record["dir"] = "out" if address[2] == PACKET_OUTGOING else "in"
                packets.append(record)
    except BlockingIOError:
        pass
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(packets, out)
    os.replace(tmp, args.out)


def dual_stack(kind, port):
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    return sock


def listen_tcp(args):
    server = dual_stack(socket.SOCK_STREAM, args.port)
    server.listen(64)
    print("ready")
    sys.stdout.flush()
    while True:
        conn, _ = server.accept()
        try:
            conn.sendall(b"pong\n")
        except OSError:
            pass
        finally:
            conn.close()


def listen_udp(args):
    server = dual_stack(socket.SOCK_DGRAM, args.port)
    print("ready")
    sys.stdout.flush()
    while True:
        _, peer = server.recvfrom(2048)
        server.sendto(b"pong\n", peer)


# ---------------------------------------------------------------------------------------------
# Techniques over ordinary sockets
# ---------------------------------------------------------------------------------------------


def tcp(args):
    name = "tcp" if args.bind_port is None else "tcp-source-port"
    family = family_of(args.host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    deadline = time.monotonic() + 2.5  # connect and first bytes together
    detail = {"host": args.host, "port": args.port, "connected": False}
    try:
        if args.bind_port is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", args.bind_port))
            detail["source_port"] = args.bind_port
        sock.connect((args.host, args.port))
        detail["connected"] = True
        detail["local"] = str(sock.getsockname()[:2])
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        data = sock.recv(256)
        detail["received"] = data[:64].decode("latin-1")
        if args.quit_hold is not None and data:
            # COM_QUIT, then keep the socket open: the server side closes first.
            sock.sendall(b"\x01\x00\x00\x00\x01")
            time.sleep(args.quit_hold)
        report(name, len(data) > 0, **detail)
    except OSError as error:
        detail["error"] = str(error)
        report(name, False, **detail)
    finally:
        sock.close()


def mysql(args):
    """A MySQL login and `SELECT 1` (PyMySQL) from a chosen source port; with --quit-hold, a
    COM_QUIT after it and the socket kept open that long, so the server side closes first."""
    import pymysql  # the tests' client; imported here so the other techniques need only stdlib

    family = family_of(args.host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    detail = {"host": args.host, "port": args.port, "source_port": args.bind_port}
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", args.bind_port))
        sock.connect((args.host, args.port))
        conn = pymysql.connect(
            host=args.host, user=args.user, password=args.password, defer_connect=True,
            connect_timeout=TIMEOUT, read_timeout=TIMEOUT,
        )
        conn.connect(sock)
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            detail["result"] = cursor.fetchone()[0]
        if args.quit_hold is not None:
            sock.sendall(b"\x01\x00\x00\x00\x01")  # COM_QUIT, socket left open
            time.sleep(args.quit_hold)
        report("mysql", detail.get("result") == 1, **detail)
    except Exception as error:  # noqa: BLE001 - any failure is "did not reach"
        detail["error"] = str(error)
        report("mysql", False, **detail)
    finally:
        sock.close()


def udp(args):
    sock = socket.socket(family_of(args.host), socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    detail = {"host": args.host, "port": args.port}
    try:
        sock.sendto(b"ping\n", (args.host, args.port))
        data, peer = sock.recvfrom(2048)
        detail["received"] = data[:64].decode("latin-1")
        detail["from"] = str(peer[:2])
        report("udp", True, **detail)
    except OSError as error:
        detail["error"] = str(error)
        report("udp", False, **detail)
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# Hand-made packets
# ---------------------------------------------------------------------------------------------


def local_address(host):
    """The source address the routing table picks for `host` (no packet is sent)."""
    probe = socket.socket(family_of(host), socket.SOCK_DGRAM)
    try:
        probe.connect((host, 9))
        return probe.getsockname()[0]
    finally:
        probe.close()


def tcp_syn(src, dst, sport, dport, seq):
    """A TCP SYN (options: MSS, SACK permitted, window scale; 32 bytes in all) and its
    checksum over the pseudo-header."""
    family = family_of(dst)
    options = struct.pack("!BBHBBBBBBBB", 2, 4, 1400, 4, 2, 1, 1, 3, 3, 7, 1)
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, 0, (5 + len(options) // 4) << 4, 0x02, 64240, 0, 0
    )
    segment = header + options
    a, b = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    if family == socket.AF_INET:
        pseudo = a + b + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    else:
        pseudo = a + b + struct.pack("!IxxxB", len(segment), socket.IPPROTO_TCP)
    csum = checksum(pseudo + segment)
    return segment[:16] + struct.pack("!H", csum) + segment[18:]


def ipv4_header(src, dst, payload_len, ident, more=False, offset=0, proto=socket.IPPROTO_TCP):
    frag = (0x2000 if more else 0) | (offset // 8)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + payload_len,
        ident,
        frag,
        64,
        proto,
        0,
        socket.inet_pton(socket.AF_INET, src),
        socket.inet_pton(socket.AF_INET, dst),
    )
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


def ipv6_header(src, dst, payload_len, next_header):
    return (
        struct.pack("!IHBB", 6 << 28, payload_len, next_header, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
    )


def send_raw(dst, packets):
    """Sends whole IP packets (header included) to `dst`."""
    if family_of(dst) == socket.AF_INET:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    else:
        # IPPROTO_RAW on an IPv6 socket means the header is included (IPV6_HDRINCL).
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        for packet in packets:
            sock.sendto(packet, (dst, 0))
    finally:
        sock.close()


def answer_listener(dst):
    """A raw socket that sees every TCP segment arriving at this host."""
    sock = socket.socket(family_of(dst), socket.SOCK_RAW, socket.IPPROTO_TCP)
    sock.setblocking(False)
    return sock


def wait_syn_ack(sock, dst, dport, sport, seq):
    """True when a SYN-ACK from dst:dport to our sport acknowledging seq arrives in time."""
    deadline = time.monotonic() + TIMEOUT
    want = ipaddress.ip_address(dst)
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        data, peer = sock.recvfrom(65535)
        if ipaddress.ip_address(peer[0]) != want:
            continue
        if sock.family == socket.AF_INET:  # IPv4 raw sockets deliver the IP header too
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) < 14:
            continue
        src_port, dst_port, _, ack = struct.unpack("!HHII", data[:12])
        if (src_port, dst_port) == (dport, sport) and data[13] & 0x12 == 0x12:
            return ack == (seq + 1) & 0xFFFFFFFF
    return False


def syn_technique(name, args, fragment):
    dst = args.host
    if dst.lower().startswith("::ffff:"):
        dst = str(ipaddress.ip_address(dst).ipv4_mapped)
    own = local_address(dst)
    src = args.src or own
    sport = random.randint(40000, 60999)
    seq = random.getrandbits(32)
    ident = random.getrandbits(16)
    segment = tcp_syn(src, dst, sport, args.port, seq)
    detail = {
        "host": dst,
        "port": args.port,
        "src": src,
        "sport": sport,
        "spoofed": src != own,
    }
    if family_of(dst) == socket.AF_INET:
        if fragment:
            # 8 bytes (the ports and sequence number) first, then the rest of the header.
            first, rest = segment[:8], segment[8:]
            packets = [
                ipv4_header(src, dst, len(first), ident, more=True) + first,
                ipv4_header(src, dst, len(rest), ident, offset=8) + rest,
            ]
        else:
            packets = [ipv4_header(src, dst, len(segment), ident) + segment]
    elif fragment:
        # Linux drops a first fragment without the whole TCP header (RFC 7112): 24 bytes
        # (header and MSS option) first, the remaining options in the second.
        packets = []
        for offset, piece, more in ((0, segment[:24], True), (24, segment[24:], False)):
            frag_header = struct.pack(
                "!BBHI", socket.IPPROTO_TCP, 0, offset | (1 if more else 0), ident
            )
            packets.append(
                ipv6_header(src, dst, 8 + len(piece), IPV6_FRAGMENT) + frag_header + piece
            )
    else:
        packets = [ipv6_header(src, dst, len(segment), socket.IPPROTO_TCP) + segment]
    detail["packets"] = len(packets)
    try:
        listener = answer_listener(dst)
        try:
            send_raw(dst, packets)
            reached = wait_syn_ack(listener, dst, args.port, sport, seq)
        finally:
            listener.close()
    except OSError as error:
        detail["error"] = str(error)
        reached = False
    if detail["spoofed"]:
        detail["note"] = "the answer goes to the spoofed source: the sniffer decides"
    report(name, reached, **detail)


def raw_syn(args):
    syn_technique("raw-syn", args, fragment=False)


def frag(args):
    syn_technique("frag", args, fragment=True)


def icmp6_error_about(data, sport, dport):
    """(type, code) of an ICMPv6 error (as read from a raw ICMPv6 socket) quoting our TCP
    segment from `sport` to `dport`, or None."""
    if len(data) < 8 + 40 + 4 or data[0] >= 128:  # 0-127: error messages
        return None
    inner = parse_ip(data[8:])
    if inner and (inner.get("sport"), inner.get("dport")) == (sport, dport):
        return data[0], data[1]
    return None


def mapped_syn(args):
    """A SYN on the wire to the IPv4-mapped form of a host: an IPv6 socket to such an address
    would send IPv4, so the packet is made by hand (the IPv6 header included)."""
    dst = args.host
    if ":" not in dst or ipaddress.ip_address(dst).ipv4_mapped is None:
        report("mapped-syn", False, host=dst, error="not an IPv4-mapped address")
        return
    try:
        src = args.src or local_address_v6(dst)
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as failure:
        report("mapped-syn", False, host=dst, error=f"no IPv6 route/source for {dst}: {failure}")
        return
    sport = random.randint(40000, 60999)
    seq = random.getrandbits(32)
    segment = tcp_syn(src, dst, sport, args.port, seq)
    packet = ipv6_header(src, dst, len(segment), socket.IPPROTO_TCP) + segment
    detail = {"host": dst, "port": args.port, "src": src, "sport": sport, "sent": False}
    reached, error = False, None
    try:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP)
        errors = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            listener.setblocking(False)
            errors.setblocking(False)
            send_raw(dst, [packet])
            detail["sent"] = True
            deadline = time.monotonic() + TIMEOUT
            while not reached and (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([listener, errors], [], [], left)
                if not readable:
                    break
                if listener in readable:
                    data, peer = listener.recvfrom(65535)  # IPv6: no IP header
                    reached = (
                        ipaddress.ip_address(peer[0]) == ipaddress.ip_address(dst)
                        and len(data) >= 14
                        and struct.unpack("!HH", data[:4]) == (args.port, sport)
                        and data[13] & 0x12 == 0x12
                    )
                if errors in readable:
                    data, peer = errors.recvfrom(65535)
                    if error is None and (kind := icmp6_error_about(data, sport, args.port)):
                        error = {"from": peer[0], "type": kind[0], "code": kind[1]}
        finally:
            listener.close()
            errors.close()
    except OSError as failure:
        detail["error"] = str(failure)
    detail["icmp_error"] = error
    report("mapped-syn", reached, **detail)


def local_address_v6(dst):
    """The IPv6 source address this host's routing table picks for `dst` (`ip -6 route get`:
    a socket would route an IPv4-mapped address as IPv4)."""
    out = subprocess.run(
        ["ip", "-6", "route", "get", dst], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[out.index("src") + 1]


def icmp(args):
    dst = args.host
    family = family_of(dst)
    ident, seq = random.getrandbits(16), 1
    payload = b"tollgate-lab"
    detail = {"host": dst}
    if family == socket.AF_INET:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        message = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
        message = message[:2] + struct.pack("!H", checksum(message)) + message[4:]
        reply_type = 0
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        # The kernel fills in the ICMPv6 checksum (IPV6_CHECKSUM is on for ICMPv6).
        message = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
        reply_type = 129
    reached = False
    try:
        sock.setblocking(False)
        sock.sendto(message, (dst, 0))
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                break
            data, peer = sock.recvfrom(65535)
            if family == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4 :]
            if len(data) >= 8 and ipaddress.ip_address(peer[0]) == ipaddress.ip_address(dst):
                kind, _, _, got_ident, _ = struct.unpack("!BBHHH", data[:8])
                if kind == reply_type and got_ident == ident:
                    reached = True
                    break
    except OSError as error:
        detail["error"] = str(error)
    finally:
        sock.close()
    report("icmp", reached, **detail)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sniff")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=sniff)

    for name, func in (("listen-tcp", listen_tcp), ("listen-udp", listen_udp)):
        p = sub.add_parser(name)
        p.add_argument("port", type=int)
        p.set_defaults(func=func)

    p = sub.add_parser("tcp")
    p.add_argument("--bind-port", type=int)
    p.add_argument("--quit-hold", type=float, help="send COM_QUIT and wait this long to close")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.set_defaults(func=tcp)

    p = sub.add_parser("mysql")
    p.add_argument("--bind-port", type=int, required=True)
    p.add_argument("--quit-hold", type=float)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("user")
    p.add_argument("password")
    p.set_defaults(func=mysql)

    p = sub.add_parser("udp")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.set_defaults(func=udp)

    for name, func in (("raw-syn", raw_syn), ("frag", frag)):
        p = sub.add_parser(name)
        p.add_argument("--src")
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.set_defaults(func=func)

    p = sub.add_parser("mapped-syn")
    p.add_argument("--src")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.set_defaults(func=mapped_syn)

    p = sub.add_parser("icmp")
    p.add_argument("host")
    p.set_defaults(func=icmp)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
