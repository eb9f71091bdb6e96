#!/usr/bin/env bash
# Instructions the HTTP bench's server executes per request, counted by valgrind (callgrind):
# repeatable whatever else the machine is doing, unlike req/s. Runs the server of one variant
# of a build of benches/http.rs under callgrind, sends N1 then (in a second run) N2 requests
# over one keep-alive connection, and prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and
# shutdown cancel out.
#
#   bash scripts/instructions_per_request.sh <http-bench-binary> <variant> <returning|new> [redis-url]
#   bash scripts/instructions_per_request.sh <http-bench-binary> table
#
# The binary is what `cargo bench --bench http --features redis --no-run` prints; variants as
# in benches/http.rs (e, e2, f, ...; f needs a redis-server URL). `table` measures the
# same-handler servers at one keep-alive connection, returning and new: (a) no session, (b) the
# hand-rolled DashMap, (g1) draco-session with the default config (persisted, log "1s") and
# (e) memory-only, each with its ratio to (b). Needs valgrind and python3.
set -euo pipefail
if [ "${2:-}" = table ]; then
  for mode in returning new; do
    declare -A n=()
    for v in a b g1 e; do
      n[$v]=$(bash "$0" "$1" "$v" "$mode" | sed -E 's/.*: ([0-9]+) instructions.*/\1/')
    done
    for v in a b g1 e; do
      echo "$mode $v: ${n[$v]} instructions per request, $(python3 -c "print(f'{${n[$v]} / ${n[b]}:.2f}')")x (b)"
    done
  done
  exit 0
fi
bin=$1 variant=$2 mode=$3 redis=${4:-}
N1=${N1:-500} N2=${N2:-2500}

client() { # port count mode
  python3 - "$@" <<'PY'
import http.client, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
cookie = None
for _ in range(n):
    headers = {"User-Agent": ua}
    if mode == "returning" and cookie:
        headers["Cookie"] = cookie
    c.request("GET", "/", headers=headers)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"status {r.status}")
    sc = r.getheader("set-cookie")
    if sc and cookie is None:
        cookie = sc.split(";")[0]
PY
}

instructions() { # count
  local port out pid
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --serve "$variant" --port "$port" --redis "$redis" \
    >/dev/null 2>"$out" &
  pid=$!
  for _ in $(seq 1 300); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.2
  done
  client "$port" "$1" "$mode"
  kill -INT "$pid"
  wait "$pid" || true
  # One "Collected" line per process: the server is one process with several threads.
  awk '/Collected/ { s += $4 } END { print s }' "$out"
  rm -f "$out"
}

a=$(instructions "$N1")
b=$(instructions "$N2")
echo "$variant $mode: $(((b - a) / (N2 - N1))) instructions per request ($N1 and $N2 requests)"
