#!/usr/bin/env bash
# Runs a command against a local stack started for it, then stops the stack.
# Usage: scripts/with-stack.sh MOTO_PORT API_PORT LAMBDA_PORT command...
# The command sees the stack's settings (.local/test/stack.env): TIERUP_API_URL, AWS_ENDPOINT_URL,
# table and queue names, the signing key for minting test tokens.
set -euo pipefail
moto_port=$1 api_port=$2 lambda_port=$3
shift 3
# A state directory of its own, so a `make run` stack on the default ports is left alone.
export TIERUP_STATE_DIR=.local/test
state=$TIERUP_STATE_DIR
mkdir -p "$state/logs"
log=$state/logs/stack.log
rm -f "$state/stack.env"
target/debug/tierup local up \
  --moto-port "$moto_port" --api-port "$api_port" --lambda-port "$lambda_port" \
  --max-visibility-timeout 3 --no-watch >"$log" 2>&1 &
stack=$!
stop() {
  kill -TERM "$stack" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$stack" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$stack" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 1 300); do
  [ -f "$state/stack.env" ] && break
  if ! kill -0 "$stack" 2>/dev/null; then
    echo "the local stack exited before it was ready:" >&2
    tail -50 "$log" >&2
    exit 1
  fi
  sleep 1
done
if [ ! -f "$state/stack.env" ]; then
  echo "the local stack was not ready after 300 s:" >&2
  tail -50 "$log" >&2
  exit 1
fi
set -a
# shellcheck disable=SC1091
source "$state/stack.env"
set +a
# The first request compiles nothing (the workspace is built) but starts the function.
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$TIERUP_API_URL/v1/health" && break
  sleep 1
done
"$@"
