#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (from [package.metadata.deb] in Cargo.toml), then
# checks it: lintian must report no errors, and `systemd-analyze verify` must be silent on both
# units as packaged. Prints the path of the .deb on the last line.
#
#   bash packaging/build-deb.sh
#
# Uses the release profile and $CARGO_TARGET_DIR like every other build of the project, so the
# binary is not rebuilt when it is current. Installs cargo-deb (crates.io) when it is missing,
# and lintian (apt) when it is missing and this runs as root; skips what it cannot have.
# Exit status: 0 when the package is built and passes every check that could run.
set -euo pipefail
cd "$(dirname "$0")/.."

note() { printf 'build-deb: %s\n' "$*" >&2; }

if ! cargo deb --version >/dev/null 2>&1; then
  note "installing cargo-deb"
  scratch="$(mktemp -d)"
  CARGO_TARGET_DIR="$scratch" cargo install cargo-deb --version '^3.8' --locked --quiet
  rm -rf "$scratch"
fi

if ! command -v lintian >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  note "installing lintian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq lintian >/dev/null
fi

# --strip: [profile.release] keeps line tables for backtraces; the package ships without them.
deb="$(cargo deb --strip | tail -n 1)"
[ -f "$deb" ] || { note "cargo deb did not report a package (got '$deb')"; exit 1; }
note "built $deb"

failed=0

if command -v lintian >/dev/null 2>&1; then
  note "lintian (fails on errors; warnings and infos are listed)"
  if ! lintian --allow-root --fail-on error --display-info --pedantic --show-overrides "$deb"; then
    note "lintian reports errors"
    failed=1
  fi
else
  note "lintian not available: skipped"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify checks that ExecStart's binary exists and that the Documentation= man page is
  # found, so it runs on the units as packaged, pointed at the packaged binary and man page.
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  dpkg-deb -x "$deb" "$root/pkg"
  mkdir "$root/units"
  for unit in "$root"/pkg/usr/lib/systemd/system/*.service; do
    sed "s|^ExecStart=/usr/bin/elayday |ExecStart=$root/pkg/usr/bin/elayday |" "$unit" \
      >"$root/units/$(basename "$unit")"
  done
  note "systemd-analyze verify (must print nothing)"
  if ! output="$(MANPATH="$root/pkg/usr/share/man" systemd-analyze verify "$root"/units/*.service 2>&1)" \
    || [ -n "$output" ]; then
    printf '%s\n' "$output" >&2
    note "systemd-analyze verify reports problems"
    failed=1
  fi
  for unit in "$root"/units/*.service; do
    systemd-analyze security --offline=yes "$unit" 2>/dev/null | tail -n 1 >&2 || true
  done
else
  note "systemd-analyze not available: skipped"
fi

[ "$failed" = 0 ] || exit 1
echo "$deb"
