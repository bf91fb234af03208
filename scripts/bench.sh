#!/usr/bin/env bash
# Builds release binaries and runs the cluster benchmark beside etcd; see
# BENCHMARKS.md. `--no-etcd` measures Baton alone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --no-etcd "* ]] && ! command -v etcd >/dev/null; then
    # Debian's etcd 3.4, the one the benchmark compares with. The package
    # starts no service here (no systemd); the benchmark runs its own.
    echo "installing etcd-server (Debian's package) for the side-by-side run" >&2
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >&2
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >&2
    fi
fi
cargo build --release --workspace --bins
exec target/release/baton-bench "$@"
