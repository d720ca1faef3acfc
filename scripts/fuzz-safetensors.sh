#!/usr/bin/env bash
# Fuzzes the SafeTensors header parser (strict JSON + validation + write/read
# round trip) with libFuzzer and AddressSanitizer.
#
# usage: scripts/fuzz-safetensors.sh [seconds=300]
# env:   FUZZ_DIR (work dir, default .build/fuzz-safetensors), JOBS (build jobs, default 1),
#        FUZZ_ARGS (extra libFuzzer flags)
#
# Notes (Swift 6.3 on Linux): -parse-as-library is required so main.swift has no
# top-level code; the target defines SafeTensorsFuzz_main itself because SwiftPM
# links executables with --defsym main=<Target>_main, which would otherwise
# leave main undefined.
set -euo pipefail
export LC_ALL=C

SECS="${1:-300}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${FUZZ_DIR:-$ROOT/.build/fuzz-safetensors}"
CORPUS="$WORK/corpus"
ARTIFACTS="$WORK/artifacts"
mkdir -p "$CORPUS" "$ARTIFACTS" "$WORK/seeds"

echo "== building fuzz target (release, -sanitize=fuzzer,address)"
(cd "$ROOT/fuzz" && swift build -c release -j "${JOBS:-1}" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
BIN="$(cd "$ROOT/fuzz" && swift build -c release --show-bin-path)/SafeTensorsFuzz"

# --- seed corpus -----------------------------------------------------------
le64() {  # printf escape string for a little-endian u64
    local v=$1 s="" i
    for i in 0 1 2 3 4 5 6 7; do s+=$(printf '\\x%02x' $(( (v >> (8 * i)) & 255 ))); done
    printf '%s' "$s"
}
mkst() {  # mkst FILE JSON [DATA-as-printf-escapes]
    local out=$1 json=$2 data=${3:-}
    local n=${#json}
    local pad=$(( (8 - n % 8) % 8 ))
    json+=$(printf '%*s' "$pad" '')
    n=$(( n + pad ))
    printf "$(le64 "$n")" > "$out"
    printf '%s' "$json" >> "$out"
    [ -n "$data" ] && printf "$data" >> "$out"
    return 0
}
S="$WORK/seeds"
mkst "$S/empty" '{}'
mkst "$S/metadata" '{"__metadata__":{"format":"pt","k\u00e9y":"v\ud83d\ude00\n"}}'
mkst "$S/f32_f16" '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b.weight":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]}}' \
    '\x00\x00\x80\x3f\x00\x00\x00\xc0\x00\x3c\x00\xc0'
mkst "$S/all_small" '{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"z":{"dtype":"I64","shape":[0,3],"data_offsets":[2,2]},"u":{"dtype":"U8","shape":[3],"data_offsets":[2,5]},"b":{"dtype":"BOOL","shape":[1],"data_offsets":[5,6]},"e":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[6,8]}}' \
    '\x80\x3f\x01\x02\x03\x01\x38\xff'
mkst "$S/f64_i32" '{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"i":{"dtype":"I32","shape":[1,1],"data_offsets":[8,12]}, "x":{"dtype":"F8_E5M2","shape":[4],"data_offsets":[12,16]}}' \
    '\x00\x00\x00\x00\x00\x00\xf0\x3f\xff\xff\xff\xff\x3c\x7c\xfc\x01'
printf '%s' '{"a":[1,-2,3.5e-7,true,false,null,"\u0041\\"],"b":{"c":{}}}' > "$S/json"

cat > "$WORK/dict" <<'DICT'
"dtype"
"shape"
"data_offsets"
"__metadata__"
"F64"
"F32"
"F16"
"BF16"
"F8_E4M3"
"F8_E5M2"
"I64"
"I32"
"I16"
"I8"
"U64"
"U32"
"U16"
"U8"
"BOOL"
"\\u"
"\\ud83d\\ude00"
"true"
"false"
"null"
"9223372036854775807"
"e+"
DICT

echo "== fuzzing for ${SECS}s (corpus: $CORPUS, artifacts: $ARTIFACTS)"
LOG="$WORK/fuzz.log"
set +e
"$BIN" "$CORPUS" "$S" -dict="$WORK/dict" -max_total_time="$SECS" -max_len=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$ARTIFACTS/" ${FUZZ_ARGS:-} > "$LOG" 2>&1
RC=$?
set -e

echo "== summary"
grep -E '^Done [0-9]+ runs' "$LOG" || true
grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' "$LOG" || true
grep -E '^#[0-9]+' "$LOG" | tail -n 1 || true
FINDINGS=$(find "$ARTIFACTS" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
echo "findings: $FINDINGS (exit code $RC)"
if [ "$FINDINGS" -gt 0 ] || [ "$RC" -ne 0 ]; then
    find "$ARTIFACTS" -type f | sed 's/^/  /'
    grep -E 'ERROR|Fatal error|precondition|SUMMARY' "$LOG" | head -n 20 || true
    echo "full log: $LOG"
    exit 1
fi
