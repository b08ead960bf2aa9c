"""gunicorn configuration for authserver: ``gunicorn -c deploy/gunicorn.conf.py authserver.wsgi``.

Every value can be set from the environment, so one file serves every host. gunicorn sits
behind a TLS-terminating reverse proxy (nginx, see deploy/README.md) and is never exposed
to the internet itself.
"""

from __future__ import annotations

import os


def _cores() -> int:
    # The CPUs this process may run on (cgroup/affinity aware), not the host's total.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Listen where only the proxy can reach us: loopback by default, or a unix socket
# ("unix:/run/authserver/gunicorn.sock"). Several addresses: separate them with commas.
bind = [address.strip() for address in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",") if address.strip()]

# Token requests are CPU-bound (RSA-3072 signatures, JSON) and short, so synchronous
# workers, the usual 2 x cores + 1 of them. Scale out with more hosts, not threads.
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * _cores() + 1))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 30))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))
# Recycle workers now and then so a slow leak cannot grow without bound; the jitter keeps
# them from restarting all at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 2000))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", 200))
# Import the application in the master: authserver.wsgi refuses an unsafe production
# configuration (authserver/checks.py), and with preload that refusal stops gunicorn at
# once instead of making every worker crash in a loop. Code changes need a restart, not HUP.
preload_app = True

# Which peers may tell gunicorn that the original request was https (X-Forwarded-Proto):
# only the proxy that terminates TLS. A header from anyone else is ignored for
# wsgi.url_scheme. Django reads X-Forwarded-Proto itself when AUTHSERVER_BEHIND_TLS_PROXY is
# on (SECURE_PROXY_SSL_HEADER) and does not look at the peer address, so two rules hold
# together: gunicorn is reachable from the proxy only (bind above), and the proxy always
# overwrites X-Forwarded-Proto rather than passing on what the client sent (STANDARDS.md,
# Transport: headers set by a TLS offloader are trusted only from configured proxies).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Access log on stdout, without query strings: %(U)s is the path only, never %(r)s or %(q)s.
# OAuth keeps secrets out of URLs, but a misbehaving client may still put a code, a token or
# a secret in one (RFC 9700 §4.3; ADR /core/transport/no-sensitive-uris), and the referrer
# (%(f)s) can carry another site's query string, so neither is logged. %(u)s is left out
# too: it is the unauthenticated user part of a Basic header. X-Request-ID ties a line to
# the application log and the audit log.
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" %({x-request-id}o)s'
errorlog = os.environ.get("GUNICORN_ERRORLOG", "-")
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
proc_name = "authserver"
