#!/usr/bin/env bash
# Runs the whole system on embedded defaults: SQLite, a local cache, and Celery on kombu's
# filesystem transport (worker + beat, no broker server). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${AUTHSERVER_RUN_HOST:-127.0.0.1}
PORT=${AUTHSERVER_RUN_PORT:-8000}
export AUTHSERVER_ISSUER=${AUTHSERVER_ISSUER:-http://localhost:$PORT}

mkdir -p var/celery/queue var/celery/processed var/celery/control
$PY manage.py migrate --no-input -v 0
$PY manage.py bootstrap

.venv/bin/celery -A authserver worker --beat --loglevel INFO --concurrency 1 \
  --schedule var/celery/beat-schedule >var/celery/worker.log 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM

echo "Celery worker + beat running (log: var/celery/worker.log)."
echo "Server: $AUTHSERVER_ISSUER   discovery: $AUTHSERVER_ISSUER/.well-known/openid-configuration   admin: $AUTHSERVER_ISSUER/admin/"
$PY manage.py runserver "$HOST:$PORT" --noreload
