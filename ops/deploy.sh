#!/usr/bin/env bash
# `make deploy`: a local Prefect server with its UI, the process work pool, the shared limits from the config,
# every deployment in prefect.yaml, and a worker. Each long-running piece starts in its own process group and
# leaves its pid in .state/deploy/ for `make stop`. Running it again reuses what is still running and deploys again.
#
# Settings (environment):
#   PORTCULLIS_CONFIG       config file the deployments use; unset: start the simulator and use its config
#   PORTCULLIS_PREFECT_PORT Prefect server port (default 4200)
#   PORTCULLIS_SERVER_ENV   file of KEY=VALUE server settings, e.g. ops/scale-server.env (PostgreSQL + Redis)
#   PORTCULLIS_WORKERS      number of workers to start (default 1; more than one each take one run at a time)
#   PORTCULLIS_SIM_ARGS     extra arguments for `portcullis sim`, e.g. "--clusters 2000"
#   PORTCULLIS_STATE        where pids, logs and the Prefect database go (default .state/deploy)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
STATE=$(realpath -m "${PORTCULLIS_STATE:-$ROOT/.state/deploy}")
PORT=${PORTCULLIS_PREFECT_PORT:-4200}
POOL=portcullis
WORKERS=${PORTCULLIS_WORKERS:-1}
mkdir -p "$STATE"

export PREFECT_HOME=$STATE/prefect  # never the operator's ~/.prefect
export PORTCULLIS_DEPLOY_STATE=$STATE  # marks every process started from here, flow runs too, for ops/stop.sh
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_API_PORT=$PORT  # the UI calls this port (else it calls 4200)
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_RESULTS_LOCAL_STORAGE_PATH=$STATE/results

say() { printf 'deploy: %s\n' "$*"; }
alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

# start NAME COMMAND...: in its own session (process group = its pid), logs in .state/deploy/NAME.log
start() {
  local name=$1
  shift
  if alive "$name"; then
    say "$name is already running (pid $(cat "$STATE/$name.pid"))"
    return 1
  fi
  setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
  say "$name started (pid $!, log $STATE/$name.log)"
}

# wait_for SECONDS NAME CHECK...: until CHECK succeeds, failing early if NAME's process died
wait_for() {
  local limit=$1 name=$2
  shift 2
  local waited=0
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      say "$name stopped while starting; last lines of $STATE/$name.log:"
      tail -n 30 "$STATE/$name.log" >&2
      exit 1
    fi
    if [ "$waited" -ge "$limit" ]; then
      say "$name did not come up in ${limit}s; see $STATE/$name.log"
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

# 1. The config: the operator's, or one pointing at a simulator started here.
if [ -n "${PORTCULLIS_CONFIG:-}" ]; then
  CONFIG=$(realpath "$PORTCULLIS_CONFIG")
else
  CONFIG=$STATE/sim-config.yaml
  if ! alive sim; then
    rm -f "$CONFIG"  # the simulator writes it once its servers listen
    # shellcheck disable=SC2086
    start sim "$BIN/portcullis" sim --config-out "$CONFIG" ${PORTCULLIS_SIM_ARGS:-}
  fi
  wait_for 120 sim test -s "$CONFIG"
  say "simulator config $CONFIG"
fi
"$BIN/python" -c 'import sys; from config.schema import load_config; load_config(sys.argv[1])' "$CONFIG"

# 2. The Prefect server (with the UI).
if ! alive server && curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null 2>&1; then
  say "port $PORT already answers, but not for a server this script started; set PORTCULLIS_PREFECT_PORT"
  exit 1
fi
(
  if [ -n "${PORTCULLIS_SERVER_ENV:-}" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$PORTCULLIS_SERVER_ENV"
    set +a
  fi
  start server "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT"
) || true
wait_for 180 server curl -sf "http://127.0.0.1:$PORT/api/health"

# 3. The work pool, the shared limits, the deployments.
"$BIN/prefect" work-pool inspect "$POOL" >/dev/null 2>&1 ||
  "$BIN/prefect" work-pool create "$POOL" --type process >/dev/null
say "work pool $POOL (process)"
"$BIN/python" -m tasks.access.limits --config "$CONFIG" | sed 's/^/deploy: /'
PORTCULLIS_CONFIG=$CONFIG "$BIN/prefect" --no-prompt deploy --all >"$STATE/deploy.log" 2>&1 || {
  tail -n 40 "$STATE/deploy.log" >&2
  exit 1
}
say "deployed org-rollout, rollout-wave, verify-fleet, scan-fleet with config $CONFIG"

# 4. Workers.
for i in $(seq 1 "$WORKERS"); do
  limit=()
  [ "$WORKERS" -gt 1 ] && limit=(--limit 1)
  start "worker-$i" "$BIN/prefect" worker start --pool "$POOL" --name "portcullis-worker-$i" "${limit[@]}" || true
done
for i in $(seq 1 "$WORKERS"); do
  wait_for 60 "worker-$i" grep -q "started" "$STATE/worker-$i.log"
done

cat <<EOF
deploy: ready. Prefect UI: http://127.0.0.1:$PORT  (Deployments: org-rollout, rollout-wave, verify-fleet, scan-fleet)
deploy: use the server from a shell with: export PREFECT_API_URL=$PREFECT_API_URL PREFECT_HOME=$PREFECT_HOME
deploy: stop everything with: make stop
EOF
