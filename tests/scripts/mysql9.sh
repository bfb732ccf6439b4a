#!/usr/bin/env bash
# Oracle MySQL server (Debian sid's mysql-server, 9.7.x) on Debian 12 via a sid chroot, for
# tests against the second upstream (caching_sha2_password only). Needs root (chroot).
# Usage: mysql9.sh setup ROOT | start ROOT PORT | stop ROOT
#   setup: debootstrap + mysql-server into ROOT (about 1 GB, 1-2 min; skipped when present)
#   start: a fresh datadir each time; users sha2/sha2-pw (caching_sha2_password), all privileges
set -euo pipefail
CMD=${1:?setup|start|stop}; R=${2:?usage: mysql9-chroot.sh setup|start|stop ROOT [PORT]}; PORT=${3:-33406}
M=/srv/mysqltest            # paths inside the chroot
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
  ;;
start)
  rm -rf "${R:?}$M"
  mkdir -p "$R$M/data" "$R$M/run"
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
[client]
socket=$M/run/mysqld.sock
user=root
EOF
  if [ ! -d "$R$M/data/mysql" ]; then
    chroot "$R" mysqld --defaults-file=$M/my.cnf --initialize-insecure   # root@localhost, empty password
    FIRST=1
  fi
  chroot "$R" mysqld --defaults-file=$M/my.cnf > "$R$M/mysqld.out" 2>&1 &
  echo $! > "$R$M/run/bgpid"
  for i in $(seq 1 300); do
    chroot "$R" mysqladmin --defaults-file=$M/my.cnf ping >/dev/null 2>&1 && break
    kill -0 "$(cat "$R$M/run/bgpid")" 2>/dev/null || { tail -20 "$R$M/error.log"; exit 1; }
    sleep 0.1
  done
  if [ "${FIRST:-0}" = 1 ]; then
    chroot "$R" mysql --defaults-file=$M/my.cnf -e "
      CREATE DATABASE app;
      CREATE USER 'sha2'@'%' IDENTIFIED BY 'sha2-pw';            -- caching_sha2_password (default)
      CREATE USER 'tlsonly'@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL;
      GRANT ALL ON *.* TO 'sha2'@'%', 'tlsonly'@'%';"
  fi
  echo "ready: 127.0.0.1:$PORT, CA at $R$M/data/ca.pem"
  ;;
stop)
  pid=$(cat "$R$M/run/bgpid" 2>/dev/null) || exit 0
  chroot "$R" mysqladmin --defaults-file=$M/my.cnf shutdown 2>/dev/null || kill "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
  echo "mysqld $pid did not stop"; exit 1
  ;;
esac
