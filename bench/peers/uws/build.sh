#!/usr/bin/env bash
# Builds bench/peers/uws/server.cpp (the uWebSockets peer of bench/run.sh) against pinned upstream
# commits of uWebSockets (header-only) and uSockets (built with LIBUS_NO_SSL). Upstream code never
# enters herald's tree: it is extracted into the build directory.
#
#   bench/peers/uws/build.sh [SRC_DIR]      (or UWS_SRC=SRC_DIR)
#
# SRC_DIR holds both projects, each as a checkout or a git directory, under any of these names:
#   SRC_DIR/uWebSockets, SRC_DIR/uWebSockets.git, SRC_DIR/uNetworking+uWebSockets/repo
#   (and the same for uSockets). The pinned commits are taken out of them with `git archive`; a
#   plain directory without git is copied as it is (its commit cannot be checked: a warning says so).
# Without SRC_DIR the pinned commits are cloned from https://github.com/uNetworking/.
#
# Output: $UWS_BUILD (default build/peers/uws)/uws-peer, and VERSION with the commits used.
# Needs g++ (C++20), gcc, zlib (Debian zlib1g-dev), git, tar.
set -euo pipefail

# uWebSockets at this commit pins uSockets at exactly USOCKETS_COMMIT as its submodule.
UWS_COMMIT=66dcff3dd48f0c19dd1703426365d062039321d0
USOCKETS_COMMIT=86097c490263ab662d62e8e7b541390bdec7d149

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
SRC_DIR=${1:-${UWS_SRC:-}}
OUT=${UWS_BUILD:-$ROOT/build/peers/uws}
CXX=${CXX:-g++}
CC=${CC:-gcc}

log() { printf '[uws build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_git_dir() { git --git-dir="$1" rev-parse --git-dir >/dev/null 2>&1 && [[ ! -d $1/src ]]; }

# extract NAME COMMIT DEST: the pinned commit of NAME, from SRC_DIR or from GitHub, into DEST
extract() {
  local name=$1 commit=$2 dest=$3 cand
  rm -rf "$dest"
  mkdir -p "$dest"
  if [[ -n $SRC_DIR ]]; then
    for cand in "$SRC_DIR/$name" "$SRC_DIR/$name.git" "$SRC_DIR/uNetworking+$name/repo"; do
      [[ -e $cand ]] || continue
      if is_git_dir "$cand"; then
        git --git-dir="$cand" cat-file -e "$commit^{commit}" 2>/dev/null ||
          die "$cand has no commit $commit"
        git --git-dir="$cand" archive "$commit" | tar -x -C "$dest"
        log "$name $commit from git directory $cand"
        return 0
      elif git -C "$cand" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$cand" cat-file -e "$commit^{commit}" 2>/dev/null || die "$cand has no commit $commit"
        git -C "$cand" archive "$commit" | tar -x -C "$dest"
        log "$name $commit from checkout $cand"
        return 0
      elif [[ -d $cand/src ]]; then
        cp -a "$cand/." "$dest/"
        log "warning: $cand is not a git checkout; copied as is, commit $commit not verified"
        return 0
      fi
    done
    die "no $name under $SRC_DIR (looked for $name, $name.git, uNetworking+$name/repo)"
  fi
  local tmp
  tmp=$(mktemp -d)
  log "cloning https://github.com/uNetworking/$name at $commit"
  git clone --quiet --no-checkout "https://github.com/uNetworking/$name" "$tmp/repo" ||
    die "clone of uNetworking/$name failed (offline? pass a SRC_DIR)"
  git --git-dir="$tmp/repo/.git" archive "$commit" | tar -x -C "$dest"
  rm -rf "$tmp"
}

mkdir -p "$OUT"
extract uWebSockets "$UWS_COMMIT" "$OUT/src/uWebSockets"
extract uSockets "$USOCKETS_COMMIT" "$OUT/src/uSockets"

US=$OUT/src/uSockets
mkdir -p "$OUT/obj"
log "compiling uSockets (LIBUS_NO_SSL, -O2)"
for f in "$US"/src/*.c "$US"/src/eventing/epoll_kqueue.c "$US"/src/crypto/openssl.c; do
  "$CC" -O2 -std=c11 -DLIBUS_NO_SSL -I"$US/src" -c "$f" -o "$OUT/obj/$(basename "${f%.c}").o"
done
log "compiling the peer (uWebSockets header-only, C++20, -O2)"
"$CXX" -O2 -std=c++20 -DLIBUS_NO_SSL \
  -I"$OUT/src/uWebSockets/src" -I"$US/src" \
  "$ROOT/bench/peers/uws/server.cpp" "$OUT"/obj/*.o -lz -o "$OUT/uws-peer.tmp"
mv "$OUT/uws-peer.tmp" "$OUT/uws-peer"
printf 'uWebSockets %s\nuSockets %s\n' "$UWS_COMMIT" "$USOCKETS_COMMIT" > "$OUT/VERSION"
log "built $OUT/uws-peer"
