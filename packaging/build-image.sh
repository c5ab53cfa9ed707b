#!/usr/bin/env bash
# Builds the elayday container image without a registry: the stripped binary and exactly the
# shared libraries it links (taken from this Debian machine's packages, with their copyright
# files), a passwd entry for the unprivileged user it runs as, and nothing else, imported
# with `docker import` (no base image, no Dockerfile, no builder).
#
#   bash packaging/build-image.sh                     # builds elayday, tags elayday:latest and elayday:<version>
#   bash packaging/build-image.sh --binary PATH --tag NAME [--tag NAME...]
#
# Without --binary it builds the release binary first ($CARGO_TARGET_DIR, or
# /var/tmp/elayday-target). The image's entrypoint is `elayday`, so `docker run IMAGE server
# --bind ...` runs `elayday server --bind ...`; it runs as user elayday (uid and gid 24601).
# Prints the first tag on the last line. Exit status 0 when the image was imported.
set -euo pipefail
cd "$(dirname "$0")/.."

note() { printf 'build-image: %s\n' "$*" >&2; }
die() { note "$*"; exit 1; }

binary=""
tags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --tag) tags+=("${2:?--tag needs an image name}"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

command -v docker >/dev/null 2>&1 || die "docker is not installed (apt-get install docker.io)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "the Docker engine does not answer (is dockerd running, and may this user use it?)"
for tool in ldd strip tar; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install binutils tar libc-bin)"
done

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ ${#tags[@]} -gt 0 ] || tags=("elayday:latest" "elayday:$version")

if [ -z "$binary" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/elayday-target}"
  note "building the release binary in $CARGO_TARGET_DIR"
  cargo build --release --quiet
  binary="$CARGO_TARGET_DIR/release/elayday"
fi
[ -x "$binary" ] || die "no executable at $binary"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp" "$root/usr/share/doc/elayday"
chmod 1777 "$root/tmp"

# As the .deb ships it: no debug information (the release profile keeps line tables).
strip --strip-unneeded -o "$root/usr/bin/elayday" "$binary"
chmod 755 "$root/usr/bin/elayday"

# Every shared object the binary needs, at the path the dynamic loader finds it on this
# machine, plus the Debian copyright file of the package each one comes from.
libraries="$(ldd "$binary" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }')"
[ -n "$libraries" ] || die "ldd lists no libraries for $binary (is it a dynamic x86-64 binary?)"
for library in $libraries; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
  package="$(dpkg -S "$(readlink -f "$library")" 2>/dev/null | head -n 1 | cut -d: -f1)" || true
  if [ -n "$package" ] && [ -f "/usr/share/doc/$package/copyright" ]; then
    mkdir -p "$root/usr/share/doc/$package"
    cp "/usr/share/doc/$package/copyright" "$root/usr/share/doc/$package/copyright"
  fi
done
cp packaging/copyright "$root/usr/share/doc/elayday/copyright"

# The unprivileged user, so that `USER elayday` and tools that look names up work. glibc
# resolves host names itself (files and DNS are built in since 2.34); Docker supplies
# /etc/hosts and /etc/resolv.conf at run time.
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/nonexistent
elayday:x:24601:24601:elayday:/nonexistent:/nonexistent
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
elayday:x:24601:
EOF
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"

image="${tags[0]}"
note "importing $image ($(du -sh "$root" | cut -f1) unpacked: elayday and $(echo "$libraries" | wc -w) libraries)"
# `docker import` takes only these instructions; the seed's `docker run IMAGE server ...`
# lines rely on ENTRYPOINT. No CMD but --help: `docker run IMAGE` prints the usage.
tar -C "$root" --sort=name --numeric-owner --owner=0 --group=0 -c . \
  | docker import \
      --change 'ENTRYPOINT ["/usr/bin/elayday"]' \
      --change 'CMD ["--help"]' \
      --change 'USER elayday' \
      --change 'WORKDIR /' \
      --change 'ENV PATH=/usr/bin' \
      --change 'EXPOSE 24601/udp 24602/udp 24603/tcp' \
      --message "elayday $version" \
      - "$image" >/dev/null
for tag in "${tags[@]:1}"; do
  docker tag "$image" "$tag"
done
note "tagged ${tags[*]}"
echo "$image"
