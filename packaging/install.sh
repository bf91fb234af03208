#!/bin/sh
# Installs this Baton release on this machine, as root:
#   /usr/local/bin/{baton-heart,baton-node,batonctl}
#   /usr/local/share/baton/examples/   the example task modules
#   /etc/baton/node.toml and /etc/baton/certs/   (with --config, --certs)
#   /var/lib/baton/     the node's data and the heart's node binaries
#   baton-heart.service and a user baton, where systemd runs the machine
#
#   install.sh [--config FILE] [--certs DIR]
#     --config FILE  the node's config (`batonctl config node` writes it),
#                    checked with `baton-node --check` before it is kept
#     --certs DIR    a folder holding ca.pem, node-ID.pem and node-ID.key
#
# Run it again to install a newer release's binaries: the node's data, its
# config and the binaries an upgrade made permanent are kept.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-/usr/local}
config=""
certs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=${2:?--config needs a file}; shift 2 ;;
    --certs) certs=${2:?--certs needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1; see install.sh --help" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "error: run install.sh as root (it writes $prefix/bin, /etc/baton and /var/lib/baton)" >&2
  exit 2
fi
for binary in baton-heart baton-node batonctl; do
  if [ ! -x "$here/bin/$binary" ]; then
    echo "error: $here/bin/$binary is missing: unpack the whole release archive and run its install.sh" >&2
    exit 2
  fi
done
if [ -n "$config" ] && [ ! -f "$config" ]; then
  echo "error: --config $config: no such file" >&2
  exit 2
fi
if [ -n "$certs" ] && [ ! -f "$certs/ca.pem" ]; then
  echo "error: --certs $certs: no ca.pem there; copy ca.pem, node-ID.pem and node-ID.key from \`batonctl certs init\`'s folder" >&2
  exit 2
fi

systemd=no
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemd=yes
fi

mkdir -p "$prefix/bin" /etc/baton/certs /var/lib/baton
chmod 0750 /etc/baton/certs /var/lib/baton
for binary in baton-heart baton-node batonctl; do
  # Copied beside, then renamed: a running binary is never written over.
  cp "$here/bin/$binary" "$prefix/bin/.$binary.new"
  chmod 0755 "$prefix/bin/.$binary.new"
  mv -f "$prefix/bin/.$binary.new" "$prefix/bin/$binary"
done
cp "$here/VERSION" /etc/baton/VERSION
for module in "$here"/examples/*.wasm; do
  [ -f "$module" ] || continue
  mkdir -p "$prefix/share/baton/examples"
  cp "$module" "$prefix/share/baton/examples/"
done

if [ -n "$certs" ]; then
  for file in "$certs"/*.pem "$certs"/*.key; do
    [ -f "$file" ] || continue
    cp "$file" /etc/baton/certs/
    chmod 0640 "/etc/baton/certs/$(basename "$file")"
  done
fi
if [ -n "$config" ]; then
  cp "$config" /etc/baton/.node.toml.new
  if ! "$prefix/bin/baton-node" --config /etc/baton/.node.toml.new --check; then
    rm -f /etc/baton/.node.toml.new
    echo "error: $config would not start a node (above); /etc/baton/node.toml is unchanged" >&2
    exit 2
  fi
  mv -f /etc/baton/.node.toml.new /etc/baton/node.toml
fi

if [ "$systemd" = yes ]; then
  if ! id baton >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/baton --shell /usr/sbin/nologin baton
  fi
  chown -R baton:baton /var/lib/baton
  chgrp -R baton /etc/baton/certs
  cp "$here/systemd/baton-heart.service" /etc/systemd/system/baton-heart.service
  systemctl daemon-reload
  next="systemctl enable --now baton-heart"
else
  next="$prefix/bin/baton-heart --config /etc/baton/node.toml, under this machine's supervisor"
fi
echo "installed Baton $(cat "$here/VERSION") in $prefix/bin"
if [ ! -f /etc/baton/node.toml ]; then
  echo "next: install.sh --config FILE --certs DIR (\`batonctl config node\` writes the config)"
else
  echo "next: $next"
fi
