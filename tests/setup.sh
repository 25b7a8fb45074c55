#!/usr/bin/env bash
# Installs the system packages the build needs (cmake, for pingora-core's zlib-ng) if missing.
# Sourced by examples/quickstart.sh, tests/run.sh and .ci/run.
if ! command -v cmake >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing cmake (needed to build pingora-core)..." >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq cmake >/dev/null
  else
    echo "cmake is required to build Tollgate: install it (e.g. sudo apt-get install cmake)" >&2
    exit 1
  fi
fi
