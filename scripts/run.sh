#!/usr/bin/env bash
# Runs the whole system on embedded defaults: SQLite, a local cache, and Celery on kombu's
# filesystem transport (worker + beat, no broker server), with the demo API
# (examples/demo_api/) beside the server for the README's walk-through. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${AUTHSERVER_RUN_HOST:-127.0.0.1}
PORT=${AUTHSERVER_RUN_PORT:-8000}
DEMO_API_PORT=${AUTHSERVER_DEMO_API_PORT:-8001}
DATA=${AUTHSERVER_DATA_DIR:-var}
export AUTHSERVER_ISSUER=${AUTHSERVER_ISSUER:-http://localhost:$PORT}
DEMO_API_URL=http://localhost:$DEMO_API_PORT/
# The demo API's own credentials for introspection: a fresh secret on every start, handed to
# bootstrap (which stores only its hash) and to the demo API, and written down nowhere.
DEMO_API_SECRET=$($PY -c 'import secrets; print(secrets.token_urlsafe(32))')

mkdir -p "$DATA/celery/queue" "$DATA/celery/processed" "$DATA/celery/control"
$PY manage.py migrate --no-input -v 0
DEMO_API_CLIENT_SECRET=$DEMO_API_SECRET $PY manage.py bootstrap --demo-api-url "$DEMO_API_URL"

.venv/bin/celery -A authserver worker --beat --loglevel INFO --concurrency 1 \
  --schedule "$DATA/celery/beat-schedule" >"$DATA/celery/worker.log" 2>&1 &
WORKER=$!
DEMO_API_ISSUER=$AUTHSERVER_ISSUER DEMO_API_AUDIENCE=$DEMO_API_URL DEMO_API_CLIENT_SECRET=$DEMO_API_SECRET \
  DEMO_API_HOST=$HOST DEMO_API_PORT=$DEMO_API_PORT $PY -m examples.demo_api >"$DATA/demo-api.log" 2>&1 &
DEMO_API=$!
trap 'kill $WORKER $DEMO_API 2>/dev/null; wait $WORKER $DEMO_API 2>/dev/null' EXIT INT TERM

echo "Celery worker + beat running (log: $DATA/celery/worker.log)."
echo "Demo API: $DEMO_API_URL (log: $DATA/demo-api.log); walk through it with README.md, \"Protect an API\"."
echo "Server: $AUTHSERVER_ISSUER   discovery: $AUTHSERVER_ISSUER/.well-known/openid-configuration   admin: $AUTHSERVER_ISSUER/admin/"
$PY manage.py runserver "$HOST:$PORT" --noreload
