#!/usr/bin/env bash
# Runs the fuzz targets one after another on the stable toolchain, then prints executions per
# target. Needs cargo-fuzz (`cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh                 # every target, 600 s each
#   scripts/fuzz.sh 60 snapshot     # one target, 60 s
#
# Flags: debug assertions on (overflow checks), AddressSanitizer (cargo fuzz's default), inputs up
# to 16 KiB, 5 s per input before libFuzzer calls it a hang, 2 GiB RSS / malloc limit. A crash
# lands in fuzz/artifacts/<target>/ (kept in git: tests/corpus/fuzz_regressions.rs replays it); the
# corpus grows in fuzz/corpus/<target>/. Logs go to fuzz/target/logs/.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(session_id cookie_header user_agent snapshot log_segment config csrf_token)
mkdir -p target/logs

status=0
for t in "${TARGETS[@]}"; do
  log=target/logs/$t.log
  echo "== $t: $SECONDS_PER_TARGET s (log: fuzz/$log)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --debug-assertions "$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=16384 -timeout=5 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}')
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  echo "   exit $rc, ${runs:-?} executions in ${secs:-?} s, $cov, corpus $(ls "corpus/$t" | wc -l) files"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E "^==[0-9]+==|panicked|SUMMARY|Test unit written|ERROR" "$log" | head -20
  fi
done
exit $status
