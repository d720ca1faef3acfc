#!/usr/bin/env bash
# Fuzzes the .ckpt reader (zip directory, restricted unpickler, tensor views) with libFuzzer and AddressSanitizer.
# usage: scripts/fuzz-checkpoint.sh [seconds=300]; env FUZZ_DIR, JOBS, FUZZ_ARGS as scripts/fuzz-safetensors.sh.
set -euo pipefail
SECS="${1:-300}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${FUZZ_DIR:-$ROOT/.build/fuzz-checkpoint}"
mkdir -p "$WORK/corpus" "$WORK/artifacts"
echo "== building fuzz target (release, -sanitize=fuzzer,address)"
(cd "$ROOT/fuzz" && swift build -c release -j "${JOBS:-1}" --product CheckpointFuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
BIN="$(cd "$ROOT/fuzz" && swift build -c release --show-bin-path)/CheckpointFuzz"
# Seeds: the fixture checkpoints and their pickles.
FIX="$ROOT/Tests/LeanDiffusionTests/Fixtures/ckpt"
cp "$FIX/state.ckpt" "$FIX/evil.ckpt" "$WORK/corpus/"
python3 - "$FIX" "$WORK/corpus" <<'PY'
import sys, zipfile
for name in ["state.ckpt", "evil.ckpt"]:
    z = zipfile.ZipFile(f"{sys.argv[1]}/{name}")
    pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
    open(f"{sys.argv[2]}/{name}.pkl", "wb").write(z.read(pkl))
PY
rm -f /tmp/lean-diffusion-ckpt-marker
echo "== fuzzing for ${SECS}s"
"$BIN" "$WORK/corpus" -artifact_prefix="$WORK/artifacts/" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 ${FUZZ_ARGS:-} 2>&1 | tail -20
ls "$WORK/artifacts" | head
