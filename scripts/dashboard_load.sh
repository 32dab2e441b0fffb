#!/usr/bin/env bash
# Dashboard load time: a local cluster of NODES nodes holding FILES small
# files, the page opened in headless Chromium (chromedriver's REST API, no
# test framework), and the browser's own timings printed: first contentful
# paint, DOMContentLoaded, and the moment the first live data (tiles, repair
# view, first page of files) was on screen. Median of RUNS fresh loads.
# Then a node is killed and, while the repair runs, RUNS more loads and the
# update latency: for every server-sent update the page painted, the time
# from the server computing the status to the page having drawn it
# (`window.dfsUpdateMs`), plus how many tiles showed repair traffic.
# DFS_REBUILD_PNG=path saves a screenshot of the rebuild view there.
#
# usage: scripts/dashboard_load.sh [NODES=100] [FILES=10000] [RUNS=5]
# needs: cargo, curl, python3, chromium, chromedriver
set -euo pipefail
NODES=${1:-100}
FILES=${2:-10000}
RUNS=${3:-5}
cd "$(dirname "$0")/.."
# DFS_BIN=path skips the release build (e.g. a debug binary at hand).
if [ -z "${DFS_BIN:-}" ]; then
    cargo build --release --quiet
fi
BIN=${DFS_BIN:-$PWD/target/release/dfs-sim}
WORK=$(mktemp -d)
cleanup() {
    [ -n "${UP_PID:-}" ] && kill "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null || true
    [ -n "${CD_PID:-}" ] && kill "$CD_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" up --nodes "$NODES" --data "$WORK/cluster" --base-port 0 >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 600); do grep -q "Ctrl-C stops" "$WORK/up.log" && break; sleep 0.1; done
grep -q "Ctrl-C stops" "$WORK/up.log" || { cat "$WORK/up.log"; exit 1; }
export DFS_COORD=$(sed -n 's/^export DFS_COORD=//p' "$WORK/up.log")
URL=$(sed -n 's/^dashboard: //p' "$WORK/up.log")
"$BIN" loadgen --op put --count "$FILES" --size 1024 --concurrency 8 >/dev/null

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chromedriver --port="$PORT" >/dev/null 2>&1 &
CD_PID=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$PORT/status" >/dev/null && break; sleep 0.1; done
WD=http://127.0.0.1:$PORT

measure() {
    local profile=$WORK/profile-$1
    local sid
    sid=$(curl -s -X POST "$WD/session" -H 'Content-Type: application/json' -d '{"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{"binary":"/usr/bin/chromium","args":["--headless","--no-sandbox","--disable-gpu","--disable-quic","--no-first-run","--disable-background-networking","--disable-component-update","--disable-sync","--disable-dev-shm-usage","--user-data-dir='"$profile"'"]}}}}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["sessionId"])')
    curl -s -X POST "$WD/session/$sid/url" -H 'Content-Type: application/json' -d "{\"url\":\"$URL\"}" >/dev/null
    local script='const m=performance.getEntriesByName("dfs-first-data")[0]; if(!m) return null; const p=performance.getEntriesByName("first-contentful-paint")[0]; const n=performance.getEntriesByType("navigation")[0]; return [p?p.startTime:-1, n.domContentLoadedEventEnd, m.startTime, document.querySelectorAll(".tile").length, document.querySelectorAll("tr.file-row").length];'
    local out=null
    for _ in $(seq 100); do
        out=$(curl -s -X POST "$WD/session/$sid/execute/sync" -H 'Content-Type: application/json' \
            -d "$(python3 -c 'import json,sys; print(json.dumps({"script":sys.argv[1],"args":[]}))' "$script")" |
            python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["value"]))')
        [ "$out" != null ] && break
        sleep 0.1
    done
    curl -s -X DELETE "$WD/session/$sid" >/dev/null
    echo "$out"
}

summary() {
    python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.strip() and l.strip() != "null"]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"median first contentful paint {med(0):.0f} ms, DOMContentLoaded {med(1):.0f} ms, first live data on screen {med(2):.0f} ms (target: first paint < 200 ms)")
'
}

echo "dashboard load: $NODES nodes, $FILES files, $BIN, loopback"
results=()
for r in $(seq "$RUNS"); do
    m=$(measure "$r")
    echo "  run $r: [fcp ms, DOMContentLoaded ms, first data ms, tiles, file rows] = $m"
    results+=("$m")
done
printf '%s\n' "${results[@]}" | summary

# During a repair: bigger files so the rebuild lasts, then a node killed.
"$BIN" loadgen --op put --count 200 --size 1048576 --concurrency 4 --prefix big >/dev/null
js() {
    curl -s -X POST "$WD/session/$1/execute/sync" -H 'Content-Type: application/json' \
        -d "$(python3 -c 'import json,sys; print(json.dumps({"script":sys.argv[1],"args":[]}))' "$2")" |
        python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["value"]))'
}
sid=$(curl -s -X POST "$WD/session" -H 'Content-Type: application/json' -d '{"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{"binary":"/usr/bin/chromium","args":["--headless","--no-sandbox","--disable-gpu","--disable-quic","--no-first-run","--disable-background-networking","--disable-component-update","--disable-sync","--disable-dev-shm-usage","--window-size=1400,1000","--user-data-dir='"$WORK/profile-live"'"]}}}}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["sessionId"])')
curl -s -X POST "$WD/session/$sid/url" -H 'Content-Type: application/json' -d "{\"url\":\"$URL\"}" >/dev/null
for _ in $(seq 100); do [ "$(js "$sid" 'return document.querySelectorAll(".tile").length')" = "$NODES" ] && break; sleep 0.1; done
js "$sid" 'window.dfsUpdateMs.length = 0; return 0' >/dev/null
"$BIN" kill n7 --hard --data "$WORK/cluster" >/dev/null
echo "killed n7 (hard) during the page's watch; loads while the repair runs:"
results=()
lit=0
for r in $(seq "$RUNS"); do
    m=$(measure "repair-$r")
    echo "  run $r: [fcp ms, DOMContentLoaded ms, first data ms, tiles, file rows] = $m"
    results+=("$m")
    n=$(js "$sid" 'return document.querySelectorAll(".tile.repair-source, .tile.repair-target").length')
    [ "$n" -gt "$lit" ] && lit=$n && [ -n "${DFS_REBUILD_PNG:-}" ] &&
        curl -s "$WD/session/$sid/screenshot" | python3 -c 'import json,sys,base64; open(sys.argv[1],"wb").write(base64.b64decode(json.load(sys.stdin)["value"]))' "$DFS_REBUILD_PNG"
done
printf '%s\n' "${results[@]}" | summary
for _ in $(seq 300); do
    [ "$(js "$sid" 'return +document.getElementById("repair-view").dataset.under')" = 0 ] && break
    n=$(js "$sid" 'return document.querySelectorAll(".tile.repair-source, .tile.repair-target").length')
    [ "$n" -gt "$lit" ] && lit=$n && [ -n "${DFS_REBUILD_PNG:-}" ] &&
        curl -s "$WD/session/$sid/screenshot" | python3 -c 'import json,sys,base64; open(sys.argv[1],"wb").write(base64.b64decode(json.load(sys.stdin)["value"]))' "$DFS_REBUILD_PNG"
    sleep 0.2
done
echo "most tiles showing repair traffic at once: $lit"
js "$sid" 'return window.dfsUpdateMs' | python3 -c '
import json, statistics, sys
v = sorted(json.load(sys.stdin))
if not v:
    print("no updates seen"); sys.exit()
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"update latency (server computed -> painted) over {len(v)} updates: median {statistics.median(v):.0f} ms, p95 {p(0.95):.0f} ms, max {v[-1]} ms; status computed every 250 ms while a page listens")
'
curl -s -X DELETE "$WD/session/$sid" >/dev/null
