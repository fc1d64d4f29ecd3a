#!/usr/bin/env bash
# The main job. For now: the core benchmark (`cycletime bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product cycletime
.build/release/cycletime bench "$@"
