#!/usr/bin/env bash
# granian (a Rust HTTP server) running authserver's WSGI application: the application server
# deploy/ uses, chosen by measurement (bench/RESULTS.md, "Application server").
#
#   deploy/granian.sh            # from the checkout; every GRANIAN_* variable overrides a default
#
# Like gunicorn it sits behind the TLS-terminating proxy (deploy/nginx/) and listens on
# loopback (or a unix socket: GRANIAN_UDS). Django reads X-Forwarded-Proto itself
# (AUTHSERVER_BEHIND_TLS_PROXY), so nothing here trusts forwarded headers.
set -euo pipefail
cd "$(dirname "$0")/.."
cores=$(nproc)  # the CPUs this process may run on (affinity and cgroup aware)

export GRANIAN_INTERFACE=wsgi
export GRANIAN_HOST=${GRANIAN_HOST:-127.0.0.1}
export GRANIAN_PORT=${GRANIAN_PORT:-8000}
# One process per core, each running the application in a few threads: a thread waiting on
# PostgreSQL or Redis hands the core to another (measured in bench/RESULTS.md).
export GRANIAN_WORKERS=${GRANIAN_WORKERS:-$cores}
export GRANIAN_BLOCKING_THREADS=${GRANIAN_BLOCKING_THREADS:-8}
export GRANIAN_RUNTIME_THREADS=${GRANIAN_RUNTIME_THREADS:-1}
export GRANIAN_WS=${GRANIAN_WS:-false}
export GRANIAN_BACKLOG=${GRANIAN_BACKLOG:-1024}
# Restart a worker that dies, and recycle each after a day so a slow leak cannot grow unbounded.
export GRANIAN_RESPAWN_FAILED_WORKERS=${GRANIAN_RESPAWN_FAILED_WORKERS:-true}
export GRANIAN_WORKERS_LIFETIME=${GRANIAN_WORKERS_LIFETIME:-86400}
export GRANIAN_LOG_LEVEL=${GRANIAN_LOG_LEVEL:-warning}
# The access log is the proxy's (deploy/nginx/ logs the path without the query string).
export GRANIAN_ACCESS_LOG=${GRANIAN_ACCESS_LOG:-false}

# The virtualenv's programs (.venv, or AUTHSERVER_VENV), else the PATH's (the container image).
bin="${AUTHSERVER_VENV:-.venv}/bin"
python="$bin/python" granian="$bin/granian"
[ -x "$granian" ] || { python=python granian=granian; }
# Import the application once before serving: authserver.wsgi refuses an unsafe production
# configuration (authserver/checks.py), and that refusal should stop the service here, with
# its message, instead of making every worker fail and be respawned.
"$python" -c "import authserver.wsgi"
exec "$granian" authserver.wsgi:application
