"""A client that logs in to the gateway properly (TLS, caching_sha2_password full
authentication, optionally the compressed protocol) and then breaks the protocol on purpose.
Prints the ERR packet the gateway answers with as "code sqlstate message", or "closed".

usage: broken_client.py PORT USER PASSWORD CASE
CASE: bad-compressed-frame | out-of-order | out-of-order-compressed
"""
import socket
import ssl
import struct
import sys
import zlib

CLIENT_LONG_PASSWORD = 1
CLIENT_COMPRESS = 1 << 5
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_PLUGIN_AUTH = 1 << 19


class Plain:
    def __init__(self, sock):
        self.sock = sock

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def read(self):
        header = self.recv_exact(4)
        return header[3], self.recv_exact(int.from_bytes(header[:3], "little"))

    def write(self, seq, payload):
        self.sock.sendall(len(payload).to_bytes(3, "little") + bytes([seq]) + payload)


def read_compressed_packet(conn):
    header = conn.recv_exact(7)
    length = int.from_bytes(header[:3], "little")
    raw_length = int.from_bytes(header[4:7], "little")
    body = conn.recv_exact(length)
    data = zlib.decompress(body) if raw_length else body
    return data[4:]


def describe(payload):
    if payload[:1] != b"\xff":
        return "unexpected " + payload[:1].hex()
    code = struct.unpack_from("<H", payload, 1)[0]
    return f"{code} {payload[4:9].decode()} {payload[9:].decode()}"


def main():
    port, user, password, case = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    compress = case.endswith("compressed") or case == "bad-compressed-frame"
    conn = Plain(socket.create_connection(("127.0.0.1", port), timeout=20))
    conn.read()  # greeting
    caps = (
        CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | (CLIENT_COMPRESS if compress else 0)
    )
    fixed = struct.pack("<IIB", caps, 1 << 24, 45) + b"\0" * 23
    conn.write(1, fixed)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn.sock = context.wrap_socket(conn.sock)
    # A scramble's worth of bytes: the gateway ignores it and asks for the password inside TLS.
    conn.write(2, fixed + user.encode() + b"\0" + b"\x20" + b"s" * 32 + b"caching_sha2_password\0")
    seq, more = conn.read()
    assert more == b"\x01\x04", more  # perform full authentication
    conn.write(seq + 1, password.encode() + b"\0")
    _, ok = conn.read()
    assert ok[:1] == b"\0", ok

    try:
        if case == "bad-compressed-frame":
            # A frame that claims 100 inflated bytes but holds no zlib stream.
            conn.sock.sendall((10).to_bytes(3, "little") + b"\0" + (100).to_bytes(3, "little") + b"x" * 10)
            print(describe(read_compressed_packet(conn)))
        elif case == "out-of-order-compressed":
            packet = (1).to_bytes(3, "little") + b"\x07" + b"\x0e"  # COM_PING with sequence id 7
            conn.sock.sendall(len(packet).to_bytes(3, "little") + b"\x05" + b"\0\0\0" + packet)
            print(describe(read_compressed_packet(conn)))
        else:
            conn.write(7, b"\x0e")  # COM_PING with sequence id 7
            print(describe(conn.read()[1]))
    except (EOFError, ConnectionError, ssl.SSLError):
        print("closed")


if __name__ == "__main__":
    main()
