"""The operator's toolkit: readiness (database, cache, broker), /metrics, and JSON logs."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
import uuid
from urllib.parse import urlencode

import pytest
from celery import shared_task
from django.core.cache import caches

from authserver import metrics
from authserver.celery import app as celery_app
from authserver.context import RequestContext, reset_request_context, set_request_context
from authserver.logging import JsonFormatter, RedactSecretsFilter, RequestContextFilter

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def _own_metrics(settings):
    """Counters of this test only: its own cache key prefix (the suite's workers share Redis)."""
    caches_setting = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches_setting["default"]["KEY_PREFIX"] = f"test-metrics-{uuid.uuid4().hex}"
    settings.CACHES = caches_setting


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token_request(client, registered, **data):
    return client.post(
        "/oauth/token",
        urlencode({"grant_type": "client_credentials", **data}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(registered.client_id, registered.secret),
    )


def scrape(client) -> dict[str, int]:
    """The samples of /metrics, keyed by their exposition line without the value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = int(value)
    return samples


# ---- /readyz --------------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_checks_database_cache_and_broker(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "broker": "ok"}}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_is_unavailable_without_the_broker(client, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_write_url", "redis://127.0.0.1:1/0")

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "unavailable"}


@pytest.mark.django_db
def test_readyz_counts_the_embedded_filesystem_broker_as_ready(client, monkeypatch, tmp_path):
    monkeypatch.setattr(celery_app.conf, "broker_write_url", "filesystem://")
    monkeypatch.setattr(
        celery_app.conf,
        "broker_transport_options",
        {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "control_folder": str(tmp_path)},
    )

    assert client.get("/readyz").json()["checks"]["broker"] == "ok"


# ---- /metrics -------------------------------------------------------------------------


@pytest.mark.django_db
def test_requests_are_counted_by_family_and_status_class(client):
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no-such-page")

    samples = scrape(client)

    assert samples['authserver_http_requests_total{family="health",status="2xx"}'] == 2
    assert samples['authserver_http_requests_total{family="other",status="4xx"}'] == 1


@pytest.mark.django_db
def test_tokens_issued_by_grant_and_client_and_errors_by_code(client, cc_basic):
    assert token_request(client, cc_basic).status_code == 200
    assert token_request(client, cc_basic).status_code == 200
    assert token_request(client, cc_basic, grant_type="password").status_code == 400
    assert token_request(client, cc_basic, scope="nothing:granted").status_code == 400

    samples = scrape(client)

    issued = f'authserver_tokens_issued_total{{grant_type="client_credentials",client_id="{cc_basic.client_id}"}}'
    assert samples[issued] == 2
    assert samples['authserver_token_errors_total{error="unsupported_grant_type"}'] == 1
    assert samples['authserver_token_errors_total{error="invalid_scope"}'] == 1
    assert samples['authserver_http_requests_total{family="token",status="2xx"}'] == 2
    assert samples['authserver_http_requests_total{family="token",status="4xx"}'] == 2


@pytest.mark.django_db
def test_introspections_by_result(client, cc_basic, resource_server, resource_server_api):
    token = token_request(client, cc_basic).json()["access_token"]
    auth = basic(resource_server.client_id, resource_server.secret)
    for value in (token, "not-a-token"):
        client.post("/oauth/introspect", urlencode({"token": value}), content_type=FORM, HTTP_AUTHORIZATION=auth)
    client.post("/oauth/introspect", urlencode({"token": token}), content_type=FORM)  # no credentials

    samples = scrape(client)

    assert samples['authserver_introspections_total{result="active"}'] == 1
    assert samples['authserver_introspections_total{result="inactive"}'] == 1
    assert samples['authserver_introspections_total{result="refused"}'] == 1


@shared_task(name="tests.deploy.succeeds")
def succeeds() -> int:
    return 1


@shared_task(name="tests.deploy.fails")
def fails() -> int:
    raise RuntimeError("boom")


@pytest.mark.django_db
def test_celery_task_outcomes(client):
    succeeds.apply()
    succeeds.apply()
    fails.apply()

    samples = scrape(client)

    assert samples['authserver_celery_tasks_total{task="tests.deploy.succeeds",outcome="success"}'] == 2
    assert samples['authserver_celery_tasks_total{task="tests.deploy.fails",outcome="failure"}'] == 1


@pytest.mark.django_db
def test_events_are_sent_to_redis_in_one_pipeline(client, monkeypatch):
    assert isinstance(caches["default"], metrics.RedisCache), "the suite runs on Redis (make test)"
    commands = []
    real = metrics._redis

    def counting(backend, key):
        commands.append(key)
        return real(backend, key)

    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 60.0)  # no timer flush during the test
    metrics.flush()  # what earlier tests left pending
    monkeypatch.setattr(metrics, "_redis", counting)
    for _ in range(5):
        client.get("/healthz")
    assert commands == []  # counted in the process, not sent per event

    metrics.flush()
    assert len(commands) == 1  # one pipeline for all of them
    assert metrics.read(metrics.REQUESTS)[("health", "2xx")] == 5


def test_pending_counts_reach_redis_within_the_flush_interval_without_a_reader():
    """Another process scraping /metrics sees this process's counts within FLUSH_SECONDS."""
    metrics.flush()
    backend = caches["default"]
    key = backend.make_and_validate_key("metrics:" + metrics.RATE_LIMIT_HITS.name)
    redis_client = metrics._redis(backend, key)
    field = '["flush-test"]'
    before = int(redis_client.hget(key, field) or 0)
    metrics.count_rate_limit_hit("flush-test")
    deadline = time.monotonic() + metrics.FLUSH_SECONDS + 5
    while int(redis_client.hget(key, field) or 0) == before:
        assert time.monotonic() < deadline, "the timer never sent the pending count"
        time.sleep(0.05)
    assert int(redis_client.hget(key, field)) == before + 1


@pytest.mark.django_db
def test_the_local_memory_cache_counts_too(client, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }
    client.get("/healthz")
    metrics.count_token_issued("client_credentials", 'odd "client"\\id')

    samples = scrape(client)

    assert samples['authserver_http_requests_total{family="health",status="2xx"}'] == 1
    assert (
        samples['authserver_tokens_issued_total{grant_type="client_credentials",client_id="odd \\"client\\"\\\\id"}']
        == 1
    )


def test_label_values_are_escaped_and_error_codes_bounded():
    assert metrics._escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    with pytest.raises(ValueError):
        metrics.increment(metrics.REQUESTS, "only-one-label")


@pytest.mark.django_db
def test_a_metrics_token_is_required_when_configured(client, settings):
    settings.AUTHSERVER_METRICS_TOKEN = "s3cret-scrape-token"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert response.status_code == 200
    assert b"# TYPE authserver_http_requests_total counter" in response.content


# ---- JSON logs --------------------------------------------------------------------------


def json_logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger(f"tests.deploy.json.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_logs_carry_the_request_id_and_no_secrets():
    logger, stream = json_logger()
    token = set_request_context(RequestContext(request_id="req-123", ip_address="192.0.2.1"))
    try:
        logger.info("token request with client_secret=%s", "hunter2-very-secret")
        try:
            raise ValueError("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
        except ValueError:
            logger.exception("failed")
    finally:
        reset_request_context(token)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]

    assert [line["request_id"] for line in lines] == ["req-123", "req-123"]
    assert lines[0]["message"] == "token request with client_secret=[redacted]"
    assert lines[0]["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", lines[0]["time"])
    assert "ValueError" in lines[1]["exception"]
    assert "hunter2" not in stream.getvalue()
    assert "eyJhbGciOiJSUzI1NiJ9" not in stream.getvalue()
    assert set(lines[0]) == {"time", "level", "logger", "message", "request_id", "process"}


def test_log_format_json_selects_the_json_formatter(settings):
    from tests.authserver.test_settings import run

    env = {"LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "authserver.settings"}
    script = "import django, logging; django.setup(); logging.getLogger('authserver').warning('hello %s', 'world')"
    import os

    result = run({**os.environ, **env}, "-c", script)

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["message"] == "hello world"
    assert record["logger"] == "authserver"
    assert record["request_id"] == "-"
