#!/usr/bin/env bash
# Provisioning for the Vagrant VM: rustup (the only thing the project cannot install itself),
# then the project's own setup, exactly as CI runs it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends curl ca-certificates build-essential pkg-config
if [ ! -x /root/.cargo/bin/cargo ]; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
    --component clippy,rustfmt
fi
export PATH=/root/.cargo/bin:$PATH
cargo install --locked cargo-nextest || true
cd /tollgate && cargo xtask setup
