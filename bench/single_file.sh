#!/usr/bin/env bash
# Single-file checkpoint vs the diffusers folder it was made from: load time, peak RSS, and the same PNG.
#   python3 tools/make_sd15_random.py                      # /work/sd15-random (fp32 folder)
#   python3 tools/make_single_file_fixtures.py --convert /work/sd15-random /work/sd15-random.safetensors
#   bash bench/single_file.sh [BINARY] [FOLDER] [FILE]
# Runs each twice, alternating (the first run of each reads the files cold); run it on a quiet machine.
set -euo pipefail
B=${1:-.build-native/release/lean-diffusion}
FOLDER=${2:-/work/sd15-random}
FILE=${3:-/work/sd15-random.safetensors}
out=$(mktemp -d)
for r in 1 2; do
  for m in "$FOLDER" "$FILE"; do
    n=$(basename "$m")
    "$B" generate --model "$m" --prompt "a photo of an astronaut" --seed 1 --steps 2 --dtype bf16 \
      --output "$out/$n-$r.png" --report "$out/$n-$r.json" --quiet
    python3 - "$out/$n-$r.json" "$n" "$r" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); ph = {p["name"]: p for p in r["phases"]}
steps = [round(p["seconds"], 2) for p in r["phases"] if p["name"].startswith("step")]
peak = max(p["peakRSSBytes"] for p in r["phases"]) / 2**20
print(f"{sys.argv[2]} run {sys.argv[3]}: load {ph['load']['seconds']:.2f} s, RSS after load "
      f"{ph['load']['peakRSSBytes'] / 2**20:.0f} MB, steps {steps}, peak RSS {peak:.0f} MB")
PY
  done
done
cmp "$out/$(basename "$FOLDER")-1.png" "$out/$(basename "$FILE")-1.png" && echo "same PNG bytes"
