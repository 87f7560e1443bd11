#!/bin/sh
# Builds and runs the consumer program against evdispatch.
#   run.sh install EVDISPATCH_BUILD_DIR SOURCE_DIR   cmake --install the build to a temporary
#                                                    prefix, then find_package(evdispatch)
#   run.sh subdirectory - SOURCE_DIR                 add_subdirectory(SOURCE_DIR)
# Uses ccache when it is there. Everything goes to a temporary directory, removed at the end.
set -eu
mode=$1
build=$2
src=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evdispatch-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
launcher=
if command -v ccache >/dev/null 2>&1; then
    launcher=-DCMAKE_CXX_COMPILER_LAUNCHER=ccache
fi
case $mode in
install)
    cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
    cmake -S "$src/test/cmake_consumer" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$tmp/prefix" $launcher >/dev/null ;;
subdirectory)
    cmake -S "$src/test/cmake_consumer" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DEVDISPATCH_SOURCE_DIR="$src" $launcher >/dev/null ;;
*)
    echo "usage: run.sh install|subdirectory BUILD_DIR SOURCE_DIR" >&2
    exit 2 ;;
esac
cmake --build "$tmp/build" -j 2 >/dev/null
"$tmp/build/consumer"
