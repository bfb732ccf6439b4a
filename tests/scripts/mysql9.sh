#!/usr/bin/env bash
# Oracle MySQL server (Debian sid's mysql-server, 9.7.x) on Debian 12 via a sid chroot, for
# tests against the second upstream (caching_sha2_password only). Needs root (chroot).
# Usage: mysql9.sh setup ROOT | start ROOT PORT | stop ROOT PORT
#   setup: debootstrap + mysql-server into ROOT (about 1 GB, 1-2 min; skipped when present)
#   start: a fresh instance in ROOT/srv/mysqltest/PORT each time (so several can run at once);
#          users sha2/sha2-pw (caching_sha2_password, all privileges) and tlsonly/tls-pw
#          (REQUIRE SSL); TLS with a throwaway CA and a certificate for 127.0.0.1/localhost
#          (MySQL's self-made one names no IP), CA at ROOT/srv/mysqltest/PORT/tls/ca.pem;
#          max_allowed_packet=64M. Prints "ready".
#   stop:  clean shutdown of the instance on PORT, waits for the process to exit
set -euo pipefail
CMD=${1:?setup|start|stop}; R=${2:?usage: mysql9.sh setup ROOT | start ROOT PORT | stop ROOT PORT}
case "$CMD" in
setup)
  if [ -x "$R/usr/sbin/mysqld" ]; then exit 0; fi
  if [ ! -x "$R/usr/bin/apt-get" ]; then
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    # the Debian mirror this machine already uses (deb822 sources first, then the classic list)
    MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    [ -n "$MIRROR" ] || MIRROR=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    debootstrap --variant=minbase sid "$R" "$MIRROR"
  fi
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$R/etc/resolv.conf"
  chroot "$R" apt-get -o Acquire::Check-Valid-Until=false update -q
  chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mysql-server
  chroot "$R" apt-get clean
  exit 0
  ;;
start|stop) ;;
*) echo "unknown command $CMD" >&2; exit 2 ;;
esac

PORT=${3:?usage: mysql9.sh $CMD ROOT PORT}
M=/srv/mysqltest/$PORT      # the instance's directory, as seen inside the chroot

case "$CMD" in
start)
  rm -rf "${R:?}$M"
  mkdir -p "$R$M/data" "$R$M/run" "$R$M/tls"
  # TLS: a throwaway CA and a server certificate naming 127.0.0.1 and localhost, so clients
  # and the gateway can verify the server (made on the host, used inside the chroot).
  T=$R$M/tls
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tollgate-test-mysql9-ca" \
    -keyout "$T/ca-key.pem" -out "$T/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$T/server-key.pem" -out "$T/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$T/san.ext"
  openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca-key.pem" \
    -CAcreateserial -days 30 -extfile "$T/san.ext" -out "$T/server-cert.pem" 2>/dev/null
  cat > "$R$M/my.cnf" <<EOF
[mysqld]
user=root
datadir=$M/data
socket=$M/run/mysqld.sock
pid-file=$M/run/mysqld.pid
port=$PORT
bind-address=127.0.0.1
mysqlx=OFF
skip-name-resolve
log-error=$M/error.log
innodb_buffer_pool_size=128M
innodb_redo_log_capacity=64M
performance_schema=OFF
max_allowed_packet=64M
ssl_ca=$M/tls/ca.pem
ssl_cert=$M/tls/server-cert.pem
ssl_key=$M/tls/server-key.pem
[client]
socket=$M/run/mysqld.sock
user=root
EOF
  chroot "$R" mysqld --defaults-file="$M/my.cnf" --initialize-insecure   # root@localhost, empty password
  chroot "$R" mysqld --defaults-file="$M/my.cnf" > "$R$M/mysqld.out" 2>&1 &
  echo $! > "$R$M/run/bgpid"
  for _ in $(seq 1 300); do
    chroot "$R" mysqladmin --defaults-file="$M/my.cnf" ping >/dev/null 2>&1 && break
    kill -0 "$(cat "$R$M/run/bgpid")" 2>/dev/null || { tail -20 "$R$M/error.log" >&2; exit 1; }
    sleep 0.1
  done
  chroot "$R" mysql --defaults-file="$M/my.cnf" -e "
    CREATE DATABASE app;
    CREATE USER 'sha2'@'%' IDENTIFIED BY 'sha2-pw';            -- caching_sha2_password (default)
    CREATE USER 'tlsonly'@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL;
    GRANT ALL ON *.* TO 'sha2'@'%', 'tlsonly'@'%';"
  echo "ready: 127.0.0.1:$PORT, CA at $T/ca.pem"
  ;;
stop)
  pid=$(cat "$R$M/run/bgpid" 2>/dev/null) || exit 0
  chroot "$R" mysqladmin --defaults-file="$M/my.cnf" shutdown 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || { rm -rf "${R:?}$M"; exit 0; }; sleep 0.1; done
  echo "mysqld $pid did not stop; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
  exit 0
  ;;
esac
