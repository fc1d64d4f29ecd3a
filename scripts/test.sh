#!/usr/bin/env bash
# The whole test suite, optimized (numeric code is slow in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift test -c release -Xswiftc -enable-testing --disable-swift-testing "$@"
