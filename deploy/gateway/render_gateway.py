#!/usr/bin/env python3
"""Install the API gateway's nginx configuration into an nginx prefix, with this host's values.

    sudo python3 deploy/gateway/render_gateway.py --env-file /etc/authserver/gateway.env --prefix /etc/nginx
    sudo nginx -t && sudo systemctl reload nginx

Writes <prefix>/conf.d/authserver-gateway.conf (gateway.conf with its ${NGINX_...}
placeholders filled in) and copies into <prefix>/snippets/ the gateway's snippets and the
TLS snippets of deploy/nginx/ that it includes. Values come from the environment, then the
--env-file (KEY=value lines), then the defaults below; deploy/nginx/render.py does the
filling in, so the same checks hold (a placeholder without a value, or with characters that
could end an nginx directive, is an error). Python 3.9+ standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NGINX_DIR = HERE.parent / "nginx"
DEFAULTS = {
    "NGINX_GATEWAY_LISTEN": "443",
    "NGINX_GATEWAY_UPSTREAM": "127.0.0.1:8080",
    "NGINX_GATEWAY_CHECK": "127.0.0.1:8002",
    "NGINX_GATEWAY_ACCESS_LOG": "/var/log/nginx/authserver-gateway-access.log",
    "NGINX_GATEWAY_MAX_BODY": "1m",
    "NGINX_TLS_GROUPS": "classic",
}
REQUIRED = ("NGINX_GATEWAY_SERVER_NAME",)
# deploy/nginx/ snippets that gateway.conf includes.
SHARED_SNIPPETS = (
    "authserver-tls.conf",
    "authserver-tls-groups-classic.conf",
    "authserver-tls-groups-pqc.conf",
    "authserver-hsts.conf",
)


def _nginx_render() -> Any:
    spec = importlib.util.spec_from_file_location("authserver_nginx_render", NGINX_DIR / "render.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(values: dict[str, str]) -> str:
    """gateway.conf with the placeholders filled in (deploy/nginx/render.py's checks)."""
    nginx = _nginx_render()
    # render() checks NGINX_CLIENT_CERT too, which the gateway does not use: its default.
    merged = {**nginx.DEFAULTS, **DEFAULTS, **values}
    rendered: str = nginx.render((HERE / "gateway.conf").read_text(encoding="utf-8"), merged)
    return rendered


def install(prefix: Path, values: dict[str, str]) -> Path:
    (prefix / "conf.d").mkdir(parents=True, exist_ok=True)
    (prefix / "snippets").mkdir(parents=True, exist_ok=True)
    target = prefix / "conf.d" / "authserver-gateway.conf"
    target.write_text(render(values), encoding="utf-8")
    for name in SHARED_SNIPPETS:
        shutil.copyfile(NGINX_DIR / "snippets" / name, prefix / "snippets" / name)
    for snippet in sorted((HERE / "snippets").glob("*.conf")):
        shutil.copyfile(snippet, prefix / "snippets" / snippet.name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, default=Path("/etc/nginx"), help="nginx's configuration prefix")
    parser.add_argument("--env-file", type=Path, help="KEY=value lines with the NGINX_GATEWAY_* values")
    args = parser.parse_args(argv)
    values = dict(DEFAULTS)
    if args.env_file:
        values.update(_nginx_render().read_env_file(args.env_file))
    values.update({key: value for key, value in os.environ.items() if key.startswith("NGINX_")})
    for name in REQUIRED:
        if not values.get(name):
            raise SystemExit(f"render_gateway.py: {name} is required")
    target = install(args.prefix, values)
    print(f"wrote {target} and {args.prefix / 'snippets'}/authserver-*.conf; now: nginx -t", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
