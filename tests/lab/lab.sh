#!/usr/bin/env bash
# The lab: three hosts made from network namespaces and veth pairs, for tests, benchmarks and
# the Vagrant VM (docs/lab.md).
#
#   client  tgl-TAG-c   eth0 198.18.1.2/24  fd00:198:18:1::2/64   default via the bastion
#                                          (and ::ffff:0:0/96 via the bastion)
#   bastion tgl-TAG-b   tgc  198.18.1.1/24  fd00:198:18:1::1/64   (client-facing)
#                       tgd  198.18.2.1/24  fd00:198:18:2::1/64   (database-facing); forwards
#   db      tgl-TAG-d   eth0 198.18.2.2/24  fd00:198:18:2::2/64   default via the bastion
#
#   lab.sh up TAG                          (re)creates the lab TAG; prints "ready"
#   lab.sh down TAG                        removes it (and ends the processes left in it);
#                                          nothing to remove is not an error
#   lab.sh exec TAG client|bastion|db CMD...   runs CMD in that host (nsenter --net, so /sys
#                                          and the cgroup mount stay as they are)
#
# Only ever touches the three namespaces named after TAG: every veth is created inside them,
# no interface of the root namespace is created or changed, nothing is attached to anything.
set -euo pipefail

usage() {
  echo "usage: lab.sh up TAG | down TAG | exec TAG client|bastion|db CMD..." >&2
  exit 2
}
cmd=${1:-}
TAG=${2:-}
[ -n "$cmd" ] && [ -n "$TAG" ] || usage
# Short and plain: the tag ends up in namespace names (and nothing else).
if ! [[ "$TAG" =~ ^[A-Za-z0-9]{1,16}$ ]]; then
  echo "lab.sh: TAG must be 1-16 letters or digits, not '$TAG'" >&2
  exit 2
fi
C="tgl-$TAG-c"
B="tgl-$TAG-b"
D="tgl-$TAG-d"

in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }

down() {
  local ns pids
  for ns in "$C" "$B" "$D"; do
    [ -e "/run/netns/$ns" ] || continue
    # A process left in a namespace keeps it (and its veths) alive after `ip netns del`.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill $pids 2>/dev/null || true
      for _ in $(seq 1 30); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] && break
        sleep 0.1
      done
      # shellcheck disable=SC2086
      [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
}

up() {
  down
  trap 'echo "lab.sh: bringing up $TAG failed; removing it" >&2; down' ERR
  local ns
  for ns in "$C" "$B" "$D"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done

  # Forwarding, and no reverse-path filter: spoofed sources are Tollgate's to decide. The
  # defaults are set before the interfaces exist so they inherit them.
  in_ns "$B" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

  # Each pair is created inside the bastion with its peer moved straight into the other host:
  # fixed names inside the namespaces, none in the root namespace.
  ip -n "$B" link add tgc type veth peer name eth0 netns "$C"
  ip -n "$B" link add tgd type veth peer name eth0 netns "$D"
  in_ns "$B" sysctl -qw net.ipv4.conf.tgc.rp_filter=0 net.ipv4.conf.tgd.rp_filter=0

  ip -n "$C" addr add 198.18.1.2/24 dev eth0
  ip -n "$C" addr add fd00:198:18:1::2/64 dev eth0 nodad
  ip -n "$B" addr add 198.18.1.1/24 dev tgc
  ip -n "$B" addr add fd00:198:18:1::1/64 dev tgc nodad
  ip -n "$B" addr add 198.18.2.1/24 dev tgd
  ip -n "$B" addr add fd00:198:18:2::1/64 dev tgd nodad
  ip -n "$D" addr add 198.18.2.2/24 dev eth0
  ip -n "$D" addr add fd00:198:18:2::2/64 dev eth0 nodad
  ip -n "$C" link set eth0 up
  ip -n "$B" link set tgc up
  ip -n "$B" link set tgd up
  ip -n "$D" link set eth0 up
  ip -n "$C" route add default via 198.18.1.1
  ip -n "$C" -6 route add default via fd00:198:18:1::1
  # IPv4-mapped destinations (::ffff:0:0/96) go to the bastion too, for a hand-made IPv6
  # packet that keeps that form on the wire (a socket would send IPv4).
  ip -n "$C" -6 route add ::ffff:0:0/96 via fd00:198:18:1::1
  ip -n "$D" route add default via 198.18.2.1
  ip -n "$D" -6 route add default via fd00:198:18:2::1
  trap - ERR
  echo ready
}

case "$cmd" in
up) up ;;
down) down ;;
exec)
  host=${3:-}
  case "$host" in
  client) ns=$C ;;
  bastion) ns=$B ;;
  db) ns=$D ;;
  *) usage ;;
  esac
  shift 3
  [ $# -gt 0 ] || usage
  [ -e "/run/netns/$ns" ] || { echo "lab.sh: no lab $TAG (run lab.sh up $TAG)" >&2; exit 1; }
  exec nsenter --net="/run/netns/$ns" -- "$@"
  ;;
*) usage ;;
esac
