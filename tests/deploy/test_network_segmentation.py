"""Network segmentation: the allowed source networks per channel, on the real nginx.

nginx (tests/deploy/conftest.py) runs with NGINX_BACK_ALLOW=127.0.0.1/32 and no front
allow-list. Loopback answers for all of 127.0.0.0/8, so a client socket bound to 127.0.0.2
is a second source network on the same machine.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .conftest import BACK, FRONT, Nginx, Pki, nginx_render, start_nginx

pytestmark = pytest.mark.xdist_group("nginx")

DEPLOY = Path(nginx_render.HERE)


@pytest.fixture(scope="module")
def segmented_nginx(pki: Pki, live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    upstream = urlsplit(live_server.url)
    host = "127.0.0.1" if upstream.hostname == "localhost" else upstream.hostname
    yield from start_nginx(
        tmp_path_factory.mktemp("nginx-segmented"),
        pki,
        f"{host}:{upstream.port}",
        extra={"NGINX_BACK_ALLOW": "127.0.0.1/32"},
    )


def get_from(nginx: Nginx, source: str, server_name: str, path: str = "/healthz") -> int:
    """GET through nginx from the source address ``source``: the response's status."""
    raw = socket.create_connection(("127.0.0.1", nginx.https_port), timeout=10, source_address=(source, 0))
    connection = http.client.HTTPSConnection(server_name, nginx.https_port, context=nginx.context(), timeout=15)
    try:
        connection.sock = nginx.context().wrap_socket(raw, server_hostname=server_name)
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
        raw.close()


@pytest.mark.usefixtures("behind_nginx")
def test_the_back_channel_serves_only_its_allowed_networks(segmented_nginx):
    assert get_from(segmented_nginx, "127.0.0.1", BACK) == 200
    assert get_from(segmented_nginx, "127.0.0.2", BACK) == 403


@pytest.mark.usefixtures("behind_nginx")
def test_the_front_channel_without_an_allow_list_serves_every_network(segmented_nginx):
    assert get_from(segmented_nginx, "127.0.0.1", FRONT) == 200
    assert get_from(segmented_nginx, "127.0.0.2", FRONT) == 200


def test_render_writes_allow_lines_then_deny_all(tmp_path):
    values = {
        **nginx_render.DEFAULTS,
        "NGINX_FRONT_SERVER_NAME": "a.example",
        "NGINX_BACK_SERVER_NAME": "b.example",
        "NGINX_RESOLVER": "127.0.0.53",
        "NGINX_BACK_ALLOW": "192.0.2.0/24, 198.51.100.7 2001:db8::/32",
    }
    nginx_render.install(tmp_path, values)

    back = (tmp_path / "snippets" / "authserver-allow-back.conf").read_text()
    lines = [line for line in back.splitlines() if not line.startswith("#")]
    assert lines == ["allow 192.0.2.0/24;", "allow 198.51.100.7/32;", "allow 2001:db8::/32;", "deny all;"]
    front = (tmp_path / "snippets" / "authserver-allow-front.conf").read_text()
    assert not [line for line in front.splitlines() if line and not line.startswith("#")]
    conf = (tmp_path / "conf.d" / "authserver.conf").read_text()
    assert "include snippets/authserver-allow-back.conf;" in conf
    assert "include snippets/authserver-allow-front.conf;" in conf


@pytest.mark.parametrize("value", ["192.0.2.1/24", "example.nl", "192.0.2.0/24; include /etc/shadow"])
def test_render_refuses_what_is_not_a_network(value):
    with pytest.raises(SystemExit, match="NGINX_FRONT_ALLOW"):
        nginx_render.allow_snippet("front", value)


def test_the_shipped_allow_snippets_allow_every_network():
    # The nginx image's envsubst path (deploy/compose.yaml) uses these as they are.
    for channel in ("front", "back"):
        text = (DEPLOY / "snippets" / f"authserver-allow-{channel}.conf").read_text()
        assert not [line for line in text.splitlines() if line and not line.startswith("#")]
