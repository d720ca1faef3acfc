#!/usr/bin/env bash
# Kernel throughput, LeanDiffusion beside PyTorch on this machine, in one run:
#   bash bench/ops.sh [reps]
# Needs torch in python3 (pip install torch). Prints a table with GFLOP/s and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
reps=${1:-5}
swift build -c release --product lean-bench >/dev/null
out=$(mktemp)
.build/release/lean-bench "$reps" >>"$out"
python3 bench/torch_ops.py "$reps" >>"$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
key = lambda r: (r["op"], r["config"])
lean = {key(r): r for r in rows if r["impl"] == "lean"}
torch = {key(r): r for r in rows if r["impl"] == "torch"}
print(f"{'op':<16} {'config':<16} {'lean ms':>9} {'GFLOP/s':>8} {'torch ms':>9} {'GFLOP/s':>8} {'speedup':>8} {'lean peak MB':>13}")
for k, r in lean.items():
    t = torch.get(k)
    peak = f"{r['peak_mb']:.1f}" if "peak_mb" in r else ""
    if t:
        print(f"{k[0]:<16} {k[1]:<16} {r['ms']:9.1f} {r['gflops']:8.0f} {t['ms']:9.1f} {t['gflops']:8.0f} {t['ms']/r['ms']:7.2f}x {peak:>13}")
    else:
        print(f"{k[0]:<16} {k[1]:<16} {r['ms']:9.1f} {r['gflops']:8.0f} {'':>9} {'':>8} {'':>8} {peak:>13}")
PY
rm -f "$out"
