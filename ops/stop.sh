#!/usr/bin/env bash
# `make stop`: stop what `make deploy` started, by process group: workers first (SIGINT, the signal they stop on;
# a second SIGINT if needed), then the server and the simulator (SIGTERM). The Prefect database in
# .state/deploy/prefect stays, so the next `make deploy` shows the earlier runs; delete the folder to start afresh.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE=$(realpath -m "${PORTCULLIS_STATE:-$PWD/.state/deploy}")

say() { printf 'stop: %s\n' "$*"; }

# gone PGID: true when no process of the group is left
gone() { ! kill -0 -- "-$1" 2>/dev/null; }

# wait_gone PGID SECONDS
wait_gone() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    gone "$1" && return 0
    sleep 0.1
  done
  return 1
}

# stop NAME SIGNAL...: send each signal to NAME's process group in turn until the group is gone
stop() {
  local name=$1 pidfile=$STATE/$1.pid
  shift
  [ -f "$pidfile" ] || return 0
  local pgid
  pgid=$(cat "$pidfile")
  local waits=(5 10 10 10)
  local n=0
  for sig in "$@" KILL; do
    gone "$pgid" && break
    kill -"$sig" -- "-$pgid" 2>/dev/null
    wait_gone "$pgid" "${waits[$n]}" && break
    n=$((n + 1))
    say "$name (process group $pgid) still running after SIG$sig"
  done
  rm -f "$pidfile"
  say "$name stopped"
}

shopt -s nullglob
for pidfile in "$STATE"/worker-*.pid; do
  name=$(basename "$pidfile" .pid)
  stop "$name" INT INT TERM
done
stop server TERM
stop sim TERM

# Flow runs: the process worker starts each in a session of its own, so its process group does not hold them.
# They carry the marker deploy.sh exported: whatever still carries it once the rest is stopped is stopped too.
runs=()
for environ in /proc/[0-9]*/environ; do
  pid=${environ#/proc/}
  pid=${pid%/environ}
  [ "$pid" != $$ ] || continue
  tr '\0' '\n' <"$environ" 2>/dev/null | grep -qx "PORTCULLIS_DEPLOY_STATE=$STATE" && runs+=("$pid")
done
if [ ${#runs[@]} -gt 0 ]; then
  kill -TERM "${runs[@]}" 2>/dev/null
  for _ in $(seq 50); do
    alive=()
    for pid in "${runs[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && break
    sleep 0.2
  done
  [ ${#alive[@]} -gt 0 ] && kill -KILL "${alive[@]}" 2>/dev/null
  say "${#runs[@]} flow run process(es) stopped"
fi
exit 0
