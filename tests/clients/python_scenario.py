"""One compatibility scenario for a Python MySQL driver, printed as canonical JSON so a run
straight against the database and a run through Tollgate can be compared byte for byte.

usage: python_scenario.py DRIVER PORT      DRIVER: pymysql | connector | connector-prepared
"""
import datetime
import decimal
import json
import sys


def connect(driver, port):
    common = dict(host="127.0.0.1", port=port, user="app", password="app-pw")
    if driver == "pymysql":
        import pymysql

        return pymysql.connect(**common, autocommit=False)
    import mysql.connector

    return mysql.connector.connect(**common, use_pure=True, ssl_disabled=True, autocommit=False)


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
    driver, port = sys.argv[1], int(sys.argv[2])
    conn = connect(driver, port)
    prepared = driver == "connector-prepared"
    cur = conn.cursor(prepared=True) if prepared else conn.cursor()
    out = {}
    cur.execute("CREATE DATABASE IF NOT EXISTS pycompat")
    cur.execute("USE pycompat")
    cur.execute("DROP TABLE IF EXISTS t")
    cur.execute(
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, "
        "d DATETIME(6), n DECIMAL(12,3), j JSON)"
    )
    params = [
        ("a", b"\x00\xff\x10", datetime.datetime(2026, 1, 2, 3, 4, 5, 123456), decimal.Decimal("12.345"), '{"k": [1, 2]}'),
        (None, None, None, None, None),
        ("blob", bytes(range(256)) * 40, datetime.datetime(1999, 12, 31, 23, 59, 59), decimal.Decimal("-1.5"), "[]"),
    ]
    for p in params:
        cur.execute("INSERT INTO t (v, b, d, n, j) VALUES (%s, %s, %s, %s, %s)", p)
    conn.commit()
    cur.execute("SELECT id, v, b, d, n, j FROM t ORDER BY id")
    out["all"] = rows(cur)
    cur.execute("SELECT v FROM t WHERE id = %s", (1,))
    out["by_id"] = rows(cur)
    cur.execute("SELECT seq FROM seq_1_to_100000")
    big = rows(cur)
    out["big"] = [len(big), big[0], big[-1]]
    cur.execute("DELETE FROM t")
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM t")
    out["after_rollback"] = rows(cur)
    try:
        cur.execute("SELECT * FROM no_such_table")
        out["error"] = None
    except Exception as error:  # the driver's own error class
        out["error"] = getattr(error, "errno", None) or error.args[0]
    conn.close()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
