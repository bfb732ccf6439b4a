"""Server-side cursors (COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY, then COM_STMT_FETCH),
spoken at the packet level, because none of the drivers in the matrix opens cursors. Prints
what it saw as JSON, so a run straight against the database and one through Tollgate can be
compared byte for byte.

usage: cursor_fetch.py PORT USER PASSWORD DEPRECATE_EOF(0|1)
"""
import hashlib
import json
import socket
import struct
import sys

CLIENT_LONG_PASSWORD = 1
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_DEPRECATE_EOF = 1 << 24
SERVER_STATUS_CURSOR_EXISTS = 0x40
SERVER_STATUS_LAST_ROW_SENT = 0x80


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.seq = 0

    def read(self):
        header = self.sock.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            raise EOFError("connection closed")
        length = int.from_bytes(header[:3], "little")
        assert header[3] == self.seq, f"sequence {header[3]} != {self.seq}"
        self.seq = (self.seq + 1) % 256
        return self.sock.recv(length, socket.MSG_WAITALL) if length else b""

    def write(self, payload):
        self.sock.sendall(len(payload).to_bytes(3, "little") + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) % 256

    def command(self, payload):
        self.seq = 0
        self.write(payload)


def native(password, nonce):
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(nonce + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix))


def lenenc(data, pos):
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def status_of_terminator(packet, deprecate_eof):
    """Status flags of an EOF packet, or of an OK packet sent in its place."""
    if deprecate_eof:
        pos = 1
        _, pos = lenenc(packet, pos)
        _, pos = lenenc(packet, pos)
        return struct.unpack_from("<H", packet, pos)[0]
    return struct.unpack_from("<H", packet, 3)[0]


def is_terminator(packet):
    return packet[:1] == b"\xfe" and len(packet) < 0xFFFFFF


def login(conn, user, password, deprecate_eof):
    greeting = conn.read()
    pos = greeting.index(b"\0", 1) + 1 + 4
    nonce = greeting[pos : pos + 8]
    pos += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
    nonce += greeting[pos : pos + 12]
    caps = (
        CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS
        | CLIENT_PLUGIN_AUTH | (CLIENT_DEPRECATE_EOF if deprecate_eof else 0)
    )
    scramble = native(password, nonce)
    conn.write(
        struct.pack("<IIB", caps, 1 << 24, 45) + b"\0" * 23 + user + b"\0"
        + bytes([len(scramble)]) + scramble + b"mysql_native_password\0"
    )
    reply = conn.read()
    if reply[:1] == b"\xfe":  # auth switch
        name_end = reply.index(b"\0", 1)
        conn.write(native(password, reply[name_end + 1 : name_end + 21]))
        reply = conn.read()
    assert reply[:1] == b"\0", f"login failed: {reply!r}"


def read_until_terminator(conn, deprecate_eof):
    """Packets up to a terminator (or an ERR); returns (packets, terminator)."""
    packets = []
    while True:
        packet = conn.read()
        if packet[:1] == b"\xff":
            return packets, packet
        if is_terminator(packet):
            return packets, packet
        packets.append(packet)


def main():
    port, user, password, deprecate = sys.argv[1:5]
    deprecate_eof = deprecate == "1"
    conn = Conn(int(port))
    login(conn, user.encode(), password.encode(), deprecate_eof)
    out = {}
    conn.command(b"\x02demo")  # COM_INIT_DB: the sequence engine needs a current database
    assert conn.read()[:1] == b"\0"

    conn.command(b"\x16SELECT seq, CONCAT('row-', seq) FROM seq_1_to_1000")
    ok = conn.read()
    assert ok[:1] == b"\0", ok
    stmt_id, columns, params = struct.unpack_from("<IHH", ok, 1)
    for _ in range(columns):
        conn.read()
    if columns and not deprecate_eof:
        conn.read()
    out["prepared"] = [columns, params]

    fetched = []
    for round_ in range(2):  # execute twice: the cursor is closed and reopened
        conn.command(b"\x17" + struct.pack("<IBI", stmt_id, 1, 1))  # CURSOR_TYPE_READ_ONLY
        count, _ = lenenc(conn.read(), 0)
        for _ in range(count):
            conn.read()
        # The metadata ends with a terminator carrying SERVER_STATUS_CURSOR_EXISTS.
        status = status_of_terminator(conn.read(), deprecate_eof)
        cursor = bool(status & SERVER_STATUS_CURSOR_EXISTS)
        rows, batches, last = 0, 0, False
        first_row = None
        while cursor and not last:
            conn.command(b"\x1c" + struct.pack("<II", stmt_id, 300))
            batch, terminator = read_until_terminator(conn, deprecate_eof)
            assert terminator[:1] != b"\xff", terminator
            for row in batch:
                if first_row is None:
                    # binary row: 0x00, NULL bitmap (1 byte for 2 columns), BIGINT, string
                    first_row = [struct.unpack_from("<q", row, 2)[0], row[11:].decode()]
            rows += len(batch)
            batches += 1
            last = bool(status_of_terminator(terminator, deprecate_eof) & SERVER_STATUS_LAST_ROW_SENT)
        fetched.append({"cursor": cursor, "rows": rows, "batches": batches, "first": first_row})
        if round_ == 0:
            conn.command(b"\x1a" + struct.pack("<I", stmt_id))  # COM_STMT_RESET
            reset = conn.read()
            assert reset[:1] == b"\0", reset
    out["fetched"] = fetched

    conn.command(b"\x19" + struct.pack("<I", stmt_id))  # COM_STMT_CLOSE: no reply
    conn.command(b"\x0e")  # COM_PING
    out["ping"] = conn.read()[:1].hex()
    conn.command(b"\x01")
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
