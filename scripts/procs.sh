# Process helpers shared by the benchmark scripts. Source after setting
# RUN (per-run state, removed on exit), LOGS (one log file per process) and
# defining log(). Every process started with `start` is stopped on exit:
# SIGTERM, up to 5 s to go (a SeaweedFS filer whose master is gone can hang
# in shutdown), then SIGKILL.

PIDS=()
cleanup() {
  local rc=$? pid i alive
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD... : run in the background, stdout+stderr to $LOGS/NAME.log
start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  eval "PID_$name=$pid"
}

# wait_for SECONDS CMD... : retry until CMD succeeds
wait_for() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      log "timed out waiting for: $*"
      return 1
    fi
    sleep 0.2
  done
}

# make_corpus PATH BYTES : a reproducible corpus of real, mixed data (a tar
# of /usr/lib and /usr/share with sorted names and fixed mtime/owner, cut to
# BYTES), so the same machine image gives the same bytes.
make_corpus() {
  local corpus=$1 bytes=$2
  mkdir -p "$(dirname "$corpus")"
  # tar gets SIGPIPE when head has enough, hence the subshell with +pipefail.
  (
    set +o pipefail
    tar --sort=name --mtime='2020-01-01 00:00Z' --owner=0 --group=0 --numeric-owner \
      --ignore-failed-read -cf - -C / usr/lib usr/share 2>/dev/null |
      head -c "$bytes" >"$corpus.tmp"
  )
  if [[ $(stat -c %s "$corpus.tmp") -ne $bytes ]]; then
    log "corpus came out short: $(stat -c %s "$corpus.tmp") bytes"
    exit 1
  fi
  mv "$corpus.tmp" "$corpus"
}
