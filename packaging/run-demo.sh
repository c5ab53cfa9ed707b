#!/bin/sh
# run-demo.sh: builds elayday and runs `elayday demo` (a node and a reflector in one process on
# loopback, gRPC on [::1]:24603) from a clone, on a Debian machine that has the Rust toolchain.
#
# Building the gRPC C-core needs cmake, a C and a C++ compiler and make. Whatever is missing is
# installed with apt-get when this runs as root; otherwise the script prints the exact apt-get
# command and exits 1. Arguments go to `elayday demo`, e.g. --grpc 127.0.0.1:50051 --delay 0.5.
# The build goes to $CARGO_TARGET_DIR, or /var/tmp/elayday-target when that is not set.
set -eu

cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "run-demo.sh: cargo is not on PATH; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

missing=""
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v c++ >/dev/null 2>&1 || missing="$missing g++"
command -v make >/dev/null 2>&1 || missing="$missing make"

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run-demo.sh: installing what the gRPC build needs:$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        # shellcheck disable=SC2086 # one word per package
        apt-get install -y -q --no-install-recommends $missing
    else
        echo "run-demo.sh: building elayday needs:$missing" >&2
        echo "run-demo.sh: install it with:  sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/elayday-target}"
if [ ! -x "$CARGO_TARGET_DIR/release/elayday" ]; then
    echo "run-demo.sh: the first build compiles the gRPC C-core: about 10 minutes on 2 cores" >&2
fi
exec cargo run --release -- demo "$@"
