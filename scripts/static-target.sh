# Sourced by scripts/test.sh, build-static-node.sh and chaos-soak.sh: the
# target the tests build for, with glibc linked statically (peers are
# configured by IP address, so baton-node never needs glibc's NSS modules)
# and no debug info (a smaller image, a shorter link). Only units built for
# this target get these flags; build scripts and proc macros stay dynamic.
export BATON_TEST_TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static -C debuginfo=0"

# Fails unless $1 is a static executable: ldd says "statically linked"
# (static-pie) or "not a dynamic executable".
check_static() {
  if ! ldd "$1" 2>&1 | grep -qE "statically linked|not a dynamic executable"; then
    echo "error: $1 is dynamically linked; the container image needs a static binary" >&2
    exit 1
  fi
}
