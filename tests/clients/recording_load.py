"""One connection of load for the recording tests: runs numbered statements through the
gateway for a while and reports what it saw.

usage: recording_load.py PORT USER PASSWORD CA CLIENT SECONDS [PAUSE_MS]

Runs `SELECT CLIENT, i` (i = 1, 2, ...) over TLS with PyMySQL for SECONDS, pausing PAUSE_MS
(default 5) between statements, and prints one JSON line:
{"client": CLIENT, "statements": N, "errors": [[code, message], ...]}. A statement that fails
is reported and the run goes on (on a new connection when the old one is gone).
"""
import json
import sys
import time

import pymysql


def connect(port, user, password, ca):
    return pymysql.connect(
        host="127.0.0.1", port=port, user=user, password=password,
        ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True, autocommit=True,
    )


def main():
    port, user, password, ca, client, seconds = sys.argv[1:7]
    pause = float(sys.argv[7]) / 1000 if len(sys.argv) > 7 else 0.005
    port, client, seconds = int(port), int(client), float(seconds)
    conn = connect(port, user, password, ca)
    statements, errors = 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT {client}, {statements + 1}")
                row = cur.fetchone()
                if row != (client, statements + 1):
                    errors.append([0, f"wrong row {row}"])
            statements += 1
        except pymysql.MySQLError as error:
            errors.append([error.args[0], str(error.args[1:])])
            if len(errors) > 20:
                break
            try:
                conn = connect(port, user, password, ca)
            except pymysql.MySQLError:
                time.sleep(0.5)
        time.sleep(pause)
    conn.close()
    print(json.dumps({"client": client, "statements": statements, "errors": errors}))


if __name__ == "__main__":
    main()
