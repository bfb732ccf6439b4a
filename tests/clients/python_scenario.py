"""The compatibility scenario for a Python MySQL driver, printed as canonical JSON so a run
straight against the database and a run through Tollgate can be compared byte for byte.

usage: python_scenario.py DRIVER PORT USER PASSWORD CA DATABASE BLOB_BYTES
  DRIVER: pymysql | connector-pure | connector-c | mysqlclient
  BLOB_BYTES: size of the blob sent and read back (20 MiB in the issue; byte i is i % 251)
  (mysqlclient is Debian's python3-mysqldb: run it with /usr/bin/python3)

The shape is shared with the other clients' scenarios (node/scenario.js, JdbcScenario.java,
the mariadb CLI script in tests/tests/clients.rs): TLS (required, certificate verified with CA),
DDL, inserts, text and binary (server-side prepared) selects, prepared statements with
NULL/blob/datetime/decimal/JSON parameters, a multi-statement query, a 100k-row result, a
large blob round trip (20 MiB in the issue; see BLOB in tests/tests/clients.rs), a
rolled-back transaction, a change of database and an error.
PyMySQL and mysqlclient have no server-side prepared statements: their "binary" steps run
with client-side parameters over the text protocol.
"""
import sys

if len(sys.argv) > 1 and sys.argv[1] == "connector-c":
    # The wheel's C extension carries its own libssl/libcrypto (OpenSSL 3.2+); load it before
    # anything loads the system's OpenSSL 3.0 (hashlib, ssl), or it fails to import and
    # mysql.connector silently falls back to the pure implementation.
    import _mysql_connector  # noqa: F401

import datetime
import decimal
import hashlib
import json
import os
import tempfile

BIG = (
    "SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 1 AS n, 'row' AS tag "
    "FROM digits a CROSS JOIN digits b CROSS JOIN digits c CROSS JOIN digits e "
    "CROSS JOIN digits f WHERE a.d >= {p} ORDER BY n"
)


def connect(driver, port, user, password, ca):
    if driver == "pymysql":
        import pymysql
        from pymysql.constants import CLIENT

        conn = pymysql.connect(
            host="127.0.0.1", port=port, user=user, password=password,
            ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True,
            client_flag=CLIENT.MULTI_STATEMENTS, max_allowed_packet=64 * 1024 * 1024,
            autocommit=False,
        )
        import ssl

        if not isinstance(conn._sock, ssl.SSLSocket):
            raise SystemExit("pymysql: not TLS")
        return conn
    if driver == "mysqlclient":
        import MySQLdb
        from MySQLdb.constants import CLIENT

        # libmariadb reads these from an option file only (mysqlclient 1.4 has no ssl_mode).
        options = tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False)
        # libmariadb takes plain numbers here ("64M" reads as 64 bytes).
        options.write("[client]\nssl-verify-server-cert\nmax-allowed-packet=67108864\n")
        options.close()
        try:
            return MySQLdb.connect(
                host="127.0.0.1", port=port, user=user, password=password,
                ssl={"ca": ca}, read_default_file=options.name, read_default_group="client",
                # mysqlclient sets these only for client libraries numbered 4.1+ (libmariadb
                # is 3.x).
                client_flag=CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS,
            )
        finally:
            os.unlink(options.name)
    import mysql.connector

    conn = mysql.connector.connect(
        host="127.0.0.1", port=port, user=user, password=password,
        ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True,
        use_pure=(driver == "connector-pure"), autocommit=False,
    )
    kind = type(conn).__name__
    if (driver == "connector-c") != (kind == "CMySQLConnection"):
        raise SystemExit(f"{driver}: got {kind} (HAVE_CEXT={mysql.connector.HAVE_CEXT})")
    # The C extension's is_secure is always False; ask libmysqlclient for the cipher instead.
    secure = conn._cmysql.get_ssl_cipher() if driver == "connector-c" else conn.is_secure
    if not secure:
        raise SystemExit(f"{driver}: not TLS")
    return conn


def canon(value):
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.timedelta, decimal.Decimal)):
        return str(value)
    if isinstance(value, set):
        return sorted(value)
    return value


def rows(cursor):
    return [[canon(v) for v in row] for row in cursor.fetchall()]


def main():
    driver, port, user, password, ca, db, blob_len = sys.argv[1:8]
    blob_len = int(blob_len)
    conn = connect(driver, int(port), user, password, ca)
    connector = driver.startswith("connector")
    cur = conn.cursor()
    # Server-side prepared statements (binary protocol) where the driver has them.
    pcur = conn.cursor(prepared=True) if connector else cur
    out = {}

    cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
    out["tls"] = str(canon(cur.fetchall()[0][1])).startswith("TLSv1")

    # DDL
    for sql in [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"CREATE DATABASE IF NOT EXISTS {db}_other",
        f"USE {db}",
        "DROP TABLE IF EXISTS t, digits, blobs",
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, "
        "d DATETIME(6), n DECIMAL(12,3), j JSON)",
        "CREATE TABLE digits (d INT PRIMARY KEY)",
        "CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)",
    ]:
        cur.execute(sql)

    # Inserts: plain, then prepared with NULL/blob/datetime/decimal/JSON parameters.
    cur.execute("INSERT INTO digits (d) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)")
    out["digits"] = cur.rowcount
    params = [
        ("a", b"\x00\xff\x10", datetime.datetime(2026, 1, 2, 3, 4, 5, 123456),
         decimal.Decimal("12.345"), '{"k": [1, 2]}'),
        (None, None, None, None, None),
        ("blob", bytes(range(256)) * 4, datetime.datetime(1999, 12, 31, 23, 59, 59),
         decimal.Decimal("-1.5"), "[]"),
    ]
    out["inserted"] = []
    for p in params:
        pcur.execute("INSERT INTO t (v, b, d, n, j) VALUES (%s, %s, %s, %s, %s)", p)
        out["inserted"].append([pcur.rowcount, pcur.lastrowid])
    conn.commit()

    # Text and binary protocol selects.
    cur.execute("SELECT id, v, b, d, n, j FROM t ORDER BY id")
    out["text"] = rows(cur)
    pcur.execute("SELECT id, v, b, d, n, j FROM t WHERE id >= %s ORDER BY id", (1,))
    out["binary"] = rows(pcur)

    # A multi-statement query: every result set.
    cur.execute("SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; SELECT COUNT(*) FROM t")
    sets = [rows(cur)]
    while cur.nextset():
        sets.append(rows(cur))
    out["multi"] = sets

    # 100k rows (binary protocol where the driver has it).
    pcur.execute(BIG.format(p="%s"), (0,))
    big = rows(pcur)
    out["big"] = [len(big), big[0], big[-1], sum(int(r[0]) for r in big)]

    # A large blob, sent as a parameter and read back. Byte i is i % 251: the same bytes in
    # every client's scenario (the test checks the hash).
    blob = (bytes(range(251)) * (blob_len // 251 + 1))[:blob_len]
    pcur.execute("INSERT INTO blobs (id, b) VALUES (%s, %s)", (1, blob))
    conn.commit()
    # mysql-connector-python's pure prepared cursor returns a binary-protocol row longer than
    # 16 MiB (several packets) as two rows (a client bug, direct as well): read it back with
    # the text protocol there.
    rcur = cur if driver == "connector-pure" else pcur
    rcur.execute("SELECT LENGTH(b), b FROM blobs WHERE id = %s", (1,))
    (length, back), = rcur.fetchall()
    back = bytes(back, "latin-1") if isinstance(back, str) else bytes(back)
    out["blob"] = [int(length), len(back), hashlib.sha256(back).hexdigest(), back == blob]

    # A transaction rolled back.
    cur.execute("INSERT INTO t (v) VALUES ('tx')")
    cur.execute("DELETE FROM t")
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM t")
    out["after_rollback"] = rows(cur)

    # Change database with the driver's own call (COM_INIT_DB).
    if connector:
        conn.cmd_init_db(f"{db}_other")
    else:
        conn.select_db(f"{db}_other")
    cur.execute("SELECT DATABASE()")
    out["database"] = rows(cur)

    # An error: unknown table.
    try:
        cur.execute("SELECT * FROM no_such_table")
        out["error"] = None
    except Exception as error:  # the driver's own error class
        code = getattr(error, "errno", None) or error.args[0]
        out["error"] = [code, getattr(error, "sqlstate", None)]
    cur.execute("SELECT 'still usable'")
    out["after_error"] = rows(cur)
    conn.close()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
