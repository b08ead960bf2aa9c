"""``python -m examples.demo_api``: serve the demo API (configuration: app.Config.from_env).

The standard library's WSGI server, one thread per request: enough for a demonstration,
not for production (put a real API behind gunicorn, or behind deploy/gateway/).
"""

from __future__ import annotations

import os
import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .app import Config, ConfigError, create_app


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """Logs the method, the path without its query string (where a careless client may have
    put a token) and the status."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        method, _, rest = self.requestline.partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        self.log_message("%s %s %s", method, path, str(code))


def main() -> int:
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        print(f"demo API: {exc}", file=sys.stderr)
        return 2
    server = make_server(
        config.host, config.port, create_app(config), server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
    print(
        f"Demo API on http://{config.host}:{config.port}/ (audience {config.audience}, mode {config.mode}, "
        f"issuer {config.issuer})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
