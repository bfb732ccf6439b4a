#!/usr/bin/env bash
# A throwaway MariaDB 10.11 (Debian's mariadb-server) without systemd, for tests, the quickstart
# and the lab. One way to start a database in this project: everything calls this script.
#
#   mariadb.sh start DIR PORT [BIND]   own datadir under DIR, listens on BIND:PORT (default
#                                      127.0.0.1), socket in DIR/run; prints "ready"
#   mariadb.sh stop DIR                clean shutdown, waits for the process to exit
#
# Users made on first start: root@localhost (socket, no password), and for tests
# app@'%' / app-pw (all privileges) and demo@'%' / demo-pw (the demo schema only).
# Tables: demo.customers (a few rows), for the quickstart's demo session.
set -euo pipefail
cmd=${1:?usage: mariadb.sh start DIR PORT [BIND] | stop DIR}
D=${2:?usage: mariadb.sh start DIR PORT [BIND] | stop DIR}
D=$(mkdir -p "$D" && cd "$D" && pwd)

case "$cmd" in
stop)
  pid=$(cat "$D/run/mariadbd.bgpid" 2>/dev/null) || exit 0
  mariadb-admin --defaults-file="$D/my.cnf" shutdown 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
  echo "mariadbd $pid did not stop; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
  exit 0
  ;;
start) ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac

PORT=${3:?usage: mariadb.sh start DIR PORT [BIND]}
BIND=${4:-127.0.0.1}
mkdir -p "$D/data" "$D/run" "$D/tls" "$D/tmp"

# TLS: a throwaway CA and a server certificate for 127.0.0.1/localhost (MariaDB 10.11 makes
# none itself). Clients that verify use $D/tls/ca.pem.
if [ ! -f "$D/tls/server-key.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tollgate-test-ca" \
    -keyout "$D/tls/ca-key.pem" -out "$D/tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$D/tls/server-key.pem" -out "$D/tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$D/tls/san.ext"
  openssl x509 -req -in "$D/tls/server.csr" -CA "$D/tls/ca.pem" -CAkey "$D/tls/ca-key.pem" \
    -CAcreateserial -days 30 -extfile "$D/tls/san.ext" -out "$D/tls/server-cert.pem" 2>/dev/null
fi

cat > "$D/my.cnf" <<CNF
[mariadbd]
user=$(id -un)
datadir=$D/data
socket=$D/run/mysqld.sock
pid-file=$D/run/mysqld.pid
# Own temporary directory: concurrent bootstraps sharing /tmp clash on temporary table names.
tmpdir=$D/tmp
port=$PORT
bind-address=$BIND
skip-name-resolve
log-error=$D/error.log
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
max_connections=200
max_allowed_packet=64M
ssl-ca=$D/tls/ca.pem
ssl-cert=$D/tls/server-cert.pem
ssl-key=$D/tls/server-key.pem
[client]
socket=$D/run/mysqld.sock
user=root
CNF

first=0
if [ ! -d "$D/data/mysql" ]; then
  mariadb-install-db --defaults-file="$D/my.cnf" --auth-root-authentication-method=normal \
    --skip-test-db > "$D/install-db.log" 2>&1 || { cat "$D/install-db.log" >&2; exit 1; }
  first=1
fi

mariadbd --defaults-file="$D/my.cnf" > "$D/mariadbd.out" 2>&1 &
echo $! > "$D/run/mariadbd.bgpid"

for _ in $(seq 1 300); do   # up to 30 s
  if mariadb-admin --defaults-file="$D/my.cnf" ping >/dev/null 2>&1; then break; fi
  if ! kill -0 "$(cat "$D/run/mariadbd.bgpid")" 2>/dev/null; then
    echo "mariadbd died; last lines of $D/error.log:" >&2; tail -20 "$D/error.log" >&2; exit 1
  fi
  sleep 0.1
done
mariadb-admin --defaults-file="$D/my.cnf" ping >/dev/null

if [ "$first" = 1 ]; then
  mariadb --defaults-file="$D/my.cnf" <<'SQL'
CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw';
GRANT ALL ON *.* TO 'app'@'%';
CREATE DATABASE demo;
CREATE TABLE demo.customers (
  id INT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200) NOT NULL,
  plan VARCHAR(20) NOT NULL
);
INSERT INTO demo.customers (name, email, plan) VALUES
  ('Ada Lovelace', 'ada@example.com', 'enterprise'),
  ('Alan Turing', 'alan@example.com', 'team'),
  ('Grace Hopper', 'grace@example.com', 'enterprise');
CREATE USER 'demo'@'%' IDENTIFIED BY 'demo-pw';
GRANT ALL ON demo.* TO 'demo'@'%';
SQL
fi
echo ready
