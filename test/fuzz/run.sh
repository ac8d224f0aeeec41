#!/bin/sh
# Build one fuzz target with libFuzzer (clang, address and undefined sanitizers) outside meson and
# fuzz it for a while on a copy of its seed corpus; the seeds themselves are never modified.
#
#   test/fuzz/run.sh TARGET [SECONDS [JOBS]] [-- LIBFUZZER-OPTIONS...]
#
# TARGET is config, wdt or jdy; SECONDS defaults to 60. Work files go to $WJ_FUZZ_DIR (default
# build-fuzz-run/ in the source tree): the binary fuzz_TARGET, the growing corpus
# corpus-TARGET/ and crash files artifacts-TARGET/. A crash input, once minimized
# (fuzz_TARGET -minimize_crash=1 -runs=10000 FILE), belongs in test/fuzz/corpus/TARGET/ so that
# the replay test keeps it fixed. Needs clang with the libFuzzer runtime (Debian: clang,
# libclang-rt-dev or libfuzzer-dev) and the -dev packages of the libraries.
set -eu

usage() {
	echo "usage: $0 config|wdt|jdy [SECONDS [JOBS]] [-- LIBFUZZER-OPTIONS...]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
target=$1
shift
case $target in
config | wdt | jdy) ;;
*) usage ;;
esac
seconds=60
jobs=1
if [ $# -ge 1 ] && [ "$1" != "--" ]; then
	seconds=$1
	shift
fi
if [ $# -ge 1 ] && [ "$1" != "--" ]; then
	jobs=$1
	shift
fi
[ $# -ge 1 ] && [ "$1" = "--" ] && shift

src=$(cd "$(dirname "$0")/../.." && pwd)
work=${WJ_FUZZ_DIR:-$src/build-fuzz-run}
CC=${CC:-clang}
mkdir -p "$work/obj" "$work/corpus-$target" "$work/artifacts-$target"

# The library sources, as listed for meson.
sources=$(sed -n "/^wj_sources = files(/,/^)/s/^[[:space:]]*'\([a-z_]*\.c\)',*$/\1/p" \
	"$src/lib/meson.build")
[ -n "$sources" ] || { echo "$0: no sources found in lib/meson.build" >&2; exit 1; }

pkgs="libuv libcurl jansson libcrypto"
if pkg-config --exists lmdb; then
	pkgs="$pkgs lmdb"
	lmdb_libs=
else
	lmdb_libs=-llmdb
fi
# shellcheck disable=SC2086 # $pkgs is a list of words
cflags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -I$src -I$work/obj \
	-fno-sanitize-recover=all $(pkg-config --cflags $pkgs)"
# shellcheck disable=SC2086
libs="$(pkg-config --libs $pkgs) $lmdb_libs -lm"

# http.c reads the version from the header meson generates
printf '#pragma once\n#define WJ_VERSION "fuzz"\n#define WJ_DEFAULT_CONFIG "/dev/null"\n' \
	>"$work/obj/wj_build.h"

objs=
for s in $sources; do
	o=$work/obj/${s%.c}.o
	# shellcheck disable=SC2086
	$CC $cflags -fsanitize=fuzzer-no-link,address,undefined -c "$src/lib/$s" -o "$o"
	objs="$objs $o"
done
bin=$work/fuzz_$target
# shellcheck disable=SC2086
$CC $cflags -fsanitize=fuzzer,address,undefined "$src/test/fuzz/fuzz_$target.c" $objs $libs \
	-o "$bin"

cp -n "$src/test/fuzz/corpus/$target"/* "$work/corpus-$target/" 2>/dev/null || true
cd "$work"
echo "fuzzing $target for ${seconds}s: $bin"
# several jobs log to fuzz-N.log in $work; one job logs to the terminal
parallel=
[ "$jobs" -gt 1 ] && parallel="-jobs=$jobs -workers=$jobs"
# shellcheck disable=SC2086
exec "$bin" -max_total_time="$seconds" $parallel -max_len=16384 \
	-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$work/artifacts-$target/" "$@" "$work/corpus-$target"
