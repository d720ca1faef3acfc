#!/usr/bin/env bash
# The README's test command: prepares the machine (scripts/setup.sh --test: the build's libraries and Chromium for
# the web page's browser test), builds the CLI the CLI and server tests run, then runs
# every test in release mode (debug builds make the numeric tests minutes slower). Extra arguments go to swift test,
# e.g. scripts/test.sh --filter SchedulerTests
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH=/opt/swift/usr/bin:$PATH
scripts/setup.sh --test
swift build -c release --product lean-diffusion
swift test -c release "$@"
