#!/usr/bin/env bash
# The main job: TimeCycle pretraining end to end on real video (experiments/timecycle-r18-smoke.yaml,
# a few minutes on 2 cores) on vtest.avi from Debian's opencv-doc, installed when missing.
# Extra arguments go to `cycletime train` (e.g. --set train.steps=10). Results: runs/timecycle-r18-smoke/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh opencv-doc
video=/usr/share/doc/opencv-doc/examples/data/vtest.avi
if [ ! -f "$video" ] && [ -f "$video.gz" ]; then
  echo "error: $video is compressed ($video.gz); unpack it with: gunzip -k $video.gz" >&2
  exit 1
fi
swift build -c release --product cycletime
config=experiments/timecycle-r18-smoke.yaml
out=runs/timecycle-r18-smoke
if [ -f "$out/checkpoints/latest.safetensors" ]; then
  echo "note: $out already holds a run; continuing it (--resume). Delete $out to start over."
  .build/release/cycletime train --config "$config" --resume "$@"
else
  .build/release/cycletime train --config "$config" "$@"
fi
echo
echo "results in $out/: config.yaml (resolved), metrics.jsonl (loss terms, lr, grad norm, clips/s per step),"
echo "train.log, checkpoints/latest.safetensors (encoder weights under 'encoder.', torchvision key names)."
echo "features from the trained encoder: .build/release/cycletime features --checkpoint $out/checkpoints/latest.safetensors --arch resnet18 --layer layer3 --stride8 --image IMG --out F.safetensors"
