#!/usr/bin/env bash
# Soak test of the remember-me demo: a constant pool of returning visitors for a while, the
# demo's RSS sampled from /proc, latency per interval from the load generator, then checks.
#
#   scripts/soak.sh                  # the full run: 600 s, 2000 sessions, 60 s intervals
#   PROFILE=debug DURATION=45 REPORT=10 POOL=500 RSS_GROWTH=15 P99_FACTOR=3 scripts/soak.sh  # CI
#
# Environment: DURATION (s, 600), POOL (live sessions, 2000), CONCURRENCY (32), REPORT (latency
# interval, s, 60), SAMPLE (RSS sampling period, s, 10), RSS_GROWTH (allowed growth of RSS from
# the end of the 2nd interval to the end, %, 5), P99_FACTOR (allowed p99 of the last interval
# over p99 of the 2nd, 1.5), PROFILE (release, or debug to reuse what `cargo test` built), KEEP
# (keep the work directory), CARGO_TARGET_DIR (as usual).
#
# Checks: zero errors; RSS flat after warm-up (the 2nd interval); no latency creep; and the
# live session count constant: the demo's final snapshot (written on SIGTERM) holds exactly
# POOL sessions.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600}
POOL=${POOL:-2000}
CONCURRENCY=${CONCURRENCY:-32}
REPORT=${REPORT:-60}
SAMPLE=${SAMPLE:-10}
RSS_GROWTH=${RSS_GROWTH:-5}
P99_FACTOR=${P99_FACTOR:-1.5}

PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --example remember_me --example soak
else
  cargo build --quiet --example remember_me --example soak
fi
target=${CARGO_TARGET_DIR:-target}/$PROFILE/examples

work=$(mktemp -d)
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then kill -KILL "$demo_pid" 2>/dev/null || true; fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "work directory kept: $work"; fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/config.toml" <<TOML
[session]
secret = "soak test secret, at least 32 bytes long"
[cookie]
secure = false
[storage]
dir = "$work/data"
snapshot_interval = "5s"
[limits]
# Every visitor logs in as alice: no cap on her sessions, or logins end each other's.
max_sessions_per_user = 0
TOML

RUST_LOG=warn "$target/remember_me" --bind "127.0.0.1:$port" --config "$work/config.toml" 2>"$work/demo.log" &
demo_pid=$!
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

echo "soak: demo pid $demo_pid on 127.0.0.1:$port, $POOL sessions, $DURATION s; work dir $work"
"$target/soak" --url "http://127.0.0.1:$port" --pool "$POOL" --concurrency "$CONCURRENCY" \
  --duration "$DURATION" --report "$REPORT" >"$work/soak.out" 2>&1 &
soak_pid=$!

start=$(date +%s)
: >"$work/rss.tsv"
while kill -0 "$soak_pid" 2>/dev/null; do
  now=$(( $(date +%s) - start ))
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$demo_pid/status")
  printf '%s\t%s\n' "$now" "$rss" >>"$work/rss.tsv"
  sleep "$SAMPLE" &
  wait $! || true
  # Stop sampling promptly when the load ends.
  kill -0 "$soak_pid" 2>/dev/null || break
done
soak_status=0
wait "$soak_pid" || soak_status=$?
rss_end=$(awk '/^VmRSS:/ {print $2}' "/proc/$demo_pid/status")
printf '%s\t%s\n' "$(( $(date +%s) - start ))" "$rss_end" >>"$work/rss.tsv"

kill -TERM "$demo_pid"
wait "$demo_pid" || true
demo_pid=""

cat "$work/soak.out"
python3 - "$work" "$POOL" "$REPORT" "$RSS_GROWTH" "$P99_FACTOR" "$soak_status" <<'PY'
import glob, os, re, struct, sys

work, pool, report, growth_limit, p99_factor, soak_status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
failed = []

intervals = []
for line in open(os.path.join(work, "soak.out")):
    if line.startswith("interval "):
        fields = dict(kv.split("=") for kv in line.split()[2:])
        intervals.append({k: float(v) for k, v in fields.items()})
    m = re.match(r"total requests=(\d+) errors=(\d+)", line)
    if m:
        total, errors = int(m.group(1)), int(m.group(2))
print("\nlatency per interval (s, req/s, p50 ms, p99 ms, max ms):")
for i in intervals:
    print(f"  {i['end_s']:6.0f}  {i['rps']:7.0f}  {i['p50_ms']:7.3f}  {i['p99_ms']:7.3f}  {i['max_ms']:8.3f}")

rss = [tuple(map(int, l.split())) for l in open(os.path.join(work, "rss.tsv")) if l.strip()]
print("\ndemo RSS (s, MiB):")
for t, kb in rss:
    print(f"  {t:6d}  {kb / 1024:8.1f}")

if soak_status != 0 or errors != 0:
    failed.append(f"load generator: exit {soak_status}, {errors} errors")
if len(intervals) < 3:
    failed.append(f"only {len(intervals)} intervals: run longer than 3 x REPORT")
else:
    warm_end = 2 * report
    base = min(rss, key=lambda s: abs(s[0] - warm_end))
    end = rss[-1]
    growth = 100.0 * (end[1] - base[1]) / base[1]
    print(f"\nRSS: {base[1] / 1024:.1f} MiB at {base[0]} s (end of warm-up) -> {end[1] / 1024:.1f} MiB at {end[0]} s: {growth:+.2f} % (limit {growth_limit} %)")
    if growth >= growth_limit:
        failed.append(f"RSS grew {growth:.2f} % after warm-up")
    second, last = intervals[1]["p99_ms"], intervals[-1]["p99_ms"]
    print(f"p99: {second:.3f} ms in interval 2 -> {last:.3f} ms in the last: x{last / second:.2f} (limit x{p99_factor})")
    if last > p99_factor * second:
        failed.append(f"p99 crept from {second:.3f} ms to {last:.3f} ms")

# The final snapshot (written on SIGTERM): the newest generation of each shard.
newest = {}
for path in glob.glob(os.path.join(work, "data", "snapshots", "*.snap")):
    m = re.match(r"shard-(\d+)-of-(\d+)\.(\d+)\.snap$", os.path.basename(path))
    shard, gen = int(m.group(1)), int(m.group(3))
    if gen > newest.get(shard, (-1, ""))[0]:
        newest[shard] = (gen, path)
live = 0
for gen, path in newest.values():
    with open(path, "rb") as f:
        live += struct.unpack("<Q", f.read(72)[40:48])[0]
print(f"live sessions in the final snapshot: {live} (pool {pool})")
if live != pool:
    failed.append(f"{live} live sessions at the end, expected exactly {pool}")

if failed:
    print("\nSOAK FAILED: " + "; ".join(failed))
    sys.exit(1)
print("\nsoak: all checks passed")
PY
