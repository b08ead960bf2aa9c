#!/usr/bin/env python3
"""Install authserver's nginx configuration into an nginx prefix, with this host's values.

    sudo python3 deploy/nginx/render.py --env-file /etc/authserver/nginx.env --prefix /etc/nginx
    sudo nginx -t && sudo systemctl reload nginx

Writes <prefix>/conf.d/authserver.conf (authserver.conf with the ${NGINX_...} placeholders
filled in) and copies snippets/ to <prefix>/snippets/. Values come from the environment,
then the --env-file (KEY=value lines), then the defaults below; a placeholder without a
value is an error. nginx's own variables ($host, $request_id, ...) are left alone. The same
template works with the official nginx image, whose entrypoint runs envsubst on it
(deploy/compose.yaml). Python 3.9+ standard library only, so it runs before any virtualenv.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\$\{(NGINX_[A-Z0-9_]+)\}")
DEFAULTS = {
    "NGINX_FRONT_LISTEN": "443",
    "NGINX_BACK_LISTEN": "443",
    "NGINX_HTTP_LISTEN": "80",
    "NGINX_UPSTREAM": "127.0.0.1:8000",
    "NGINX_STATIC_ROOT": "/var/lib/authserver/static",
    "NGINX_TLS_GROUPS": "classic",
    "NGINX_ACCESS_LOG": "/var/log/nginx/authserver-access.log",
    "NGINX_CLIENT_CERT": "off",
}
CLIENT_CERT_MODES = ("off", "optional", "optional_no_ca")
REQUIRED = ("NGINX_FRONT_SERVER_NAME", "NGINX_BACK_SERVER_NAME", "NGINX_RESOLVER")
# Values end up inside nginx directives: no quotes, braces, semicolons or line breaks.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/\[\] -]+$")


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def render(template: str, values: dict[str, str]) -> str:
    missing = sorted({name for name in PLACEHOLDER.findall(template) if not values.get(name)})
    if missing:
        raise SystemExit(f"render.py: no value for {', '.join(missing)}")
    unsafe = sorted(name for name in PLACEHOLDER.findall(template) if not SAFE_VALUE.match(values[name]))
    if unsafe:
        raise SystemExit(f"render.py: unsafe characters in {', '.join(unsafe)}")
    if values.get("NGINX_TLS_GROUPS") not in ("classic", "pqc"):
        raise SystemExit("render.py: NGINX_TLS_GROUPS is classic or pqc")
    if values.get("NGINX_CLIENT_CERT") not in CLIENT_CERT_MODES:
        raise SystemExit(f"render.py: NGINX_CLIENT_CERT is one of {', '.join(CLIENT_CERT_MODES)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def install(prefix: Path, values: dict[str, str]) -> Path:
    (prefix / "conf.d").mkdir(parents=True, exist_ok=True)
    (prefix / "snippets").mkdir(parents=True, exist_ok=True)
    target = prefix / "conf.d" / "authserver.conf"
    target.write_text(render((HERE / "authserver.conf").read_text(encoding="utf-8"), values), encoding="utf-8")
    for snippet in sorted((HERE / "snippets").glob("*.conf")):
        shutil.copyfile(snippet, prefix / "snippets" / snippet.name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, default=Path("/etc/nginx"), help="nginx's configuration prefix")
    parser.add_argument("--env-file", type=Path, help="KEY=value lines with the NGINX_* values")
    args = parser.parse_args(argv)
    values = dict(DEFAULTS)
    if args.env_file:
        values.update(read_env_file(args.env_file))
    values.update({key: value for key, value in os.environ.items() if key.startswith("NGINX_")})
    for name in REQUIRED:
        if not values.get(name):
            raise SystemExit(f"render.py: {name} is required")
    target = install(args.prefix, values)
    print(f"wrote {target} and {args.prefix / 'snippets'}/authserver-*.conf; now: nginx -t", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
