#!/usr/bin/env bash
# Installs the Debian packages CycleTime builds and tests against, only when missing.
# Extra package names given as arguments are installed too (scripts/run.sh adds opencv-doc,
# whose examples/data/vtest.avi is the demo's real video).
set -euo pipefail
pkgs=(pkg-config libopenblas-dev libdnnl-dev libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
      ffmpeg libpng-dev libjpeg-dev zlib1g-dev libopenmpi-dev openmpi-bin "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
