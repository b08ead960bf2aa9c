"""deploy/ stays in step with the code: every setting documented, every placeholder filled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from .conftest import nginx_render

DEPLOY = Path(settings.BASE_DIR) / "deploy"
ENV_EXAMPLE = (DEPLOY / "authserver.env.example").read_text()
DOCUMENTED = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.MULTILINE))


def names_read_by(path: Path, pattern: str) -> set[str]:
    return set(re.findall(pattern, path.read_text()))


def test_every_setting_is_in_the_example_environment():
    settings_module = Path(settings.BASE_DIR) / "authserver" / "settings.py"
    read = names_read_by(settings_module, r'env(?:\.[a-z_]+)?\(\s*"([A-Z0-9_]+)"')
    read |= names_read_by(DEPLOY / "gunicorn.conf.py", r'os\.environ\.get\("([A-Z0-9_]+)"')
    read |= names_read_by(DEPLOY / "granian.sh", r"\$\{([A-Z0-9_]+):-")

    missing = sorted(read - DOCUMENTED)
    assert not missing, f"document these in deploy/authserver.env.example: {missing}"


def test_every_nginx_placeholder_is_documented_and_set_by_compose():
    placeholders = set(nginx_render.PLACEHOLDER.findall((DEPLOY / "nginx" / "authserver.conf").read_text()))
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())

    assert placeholders <= DOCUMENTED
    assert placeholders <= set(compose["services"]["nginx"]["environment"])
    assert placeholders <= set(nginx_render.DEFAULTS) | set(nginx_render.REQUIRED)


def test_compose_runs_the_whole_system():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]

    assert {"postgres", "redis", "web", "worker", "beat", "nginx"} <= set(services)
    assert services["beat"]["deploy"]["replicas"] == 1
    assert not {"ports"} & set(services["web"]), "only nginx publishes ports"
    for volume in services["nginx"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./nginx"):
            assert (DEPLOY / source).exists(), source


@pytest.mark.parametrize("unit", ["authserver-web", "authserver-worker", "authserver-beat"])
def test_systemd_units_share_the_environment_file_and_the_sandbox(unit):
    text = (DEPLOY / "systemd" / f"{unit}.service").read_text()

    assert "EnvironmentFile=/etc/authserver/authserver.env" in text
    assert "User=authserver" in text
    assert "ProtectSystem=strict" in text
    assert "NoNewPrivileges=yes" in text


def test_render_refuses_missing_and_unsafe_values():
    template = (DEPLOY / "nginx" / "authserver.conf").read_text()
    values = {**nginx_render.DEFAULTS, "NGINX_FRONT_SERVER_NAME": "a.example", "NGINX_BACK_SERVER_NAME": "b.example"}

    with pytest.raises(SystemExit, match="NGINX_RESOLVER"):
        nginx_render.render(template, values)
    with pytest.raises(SystemExit, match="unsafe"):
        nginx_render.render(template, {**values, "NGINX_RESOLVER": "1.1.1.1; include /etc/shadow"})
    with pytest.raises(SystemExit, match="classic or pqc"):
        nginx_render.render(template, {**values, "NGINX_RESOLVER": "127.0.0.53", "NGINX_TLS_GROUPS": "x"})

    rendered = nginx_render.render(template, {**values, "NGINX_RESOLVER": "127.0.0.53"})
    assert "${NGINX_" not in rendered
    assert "$request_uri" in rendered  # nginx's own variables stay
