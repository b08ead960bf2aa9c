"""Faults against real services (issue 8, item 5): PostgreSQL restarted under a stream of token
requests, Redis stopped, a Celery worker killed mid-job, a signing-key rotation under verification.

Everything runs on the private PostgreSQL and Redis of tests/faults/conftest.py, never on the
machine's shared ones. Each scenario appends its figures to $AUTHSERVER_FAULTS_REPORT (when set).
The middleware's own behaviour (no services needed) is tested at the end of this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from authserver.middleware import DatabaseUnavailableMiddleware
from authserver_rs import InvalidToken, TokenValidator

from ..conftest import make_client_key
from .conftest import PrivateServices, record_figures, wait_for

# django_db: the autouse fixtures of tests/conftest.py touch the test database; the scenarios
# themselves use only the private services.
pytestmark = [pytest.mark.faults, pytest.mark.xdist_group("faults-outages"), pytest.mark.django_db]

AUDIENCE = "https://api.example.org/orders"
THREADS = 4
# Bounds on recovery once the failed service is back (the servers are not restarted).
RECOVERY_SECONDS = 10.0
UNLIMITED = "100000/minute"

# Seeds the private database: an organisation, a client-credentials client with a secret, one
# with private_key_jwt (the key comes from the test), a resource server introspecting the
# orders API, and the signing keys.
SEED = """
from authserver.models import ApiResource, Scope
from authserver.oauth.keys import keyring
from clients.services import client_create, client_credential_add_public_key, client_credential_issue_secret
from django.conf import settings
from tests.factories import OrganisationFactory

organisation = OrganisationFactory()
def client(name, method, **extra):
    return client_create(organisation=organisation, name=name, grant_type="client_credentials",
                         scopes=extra.pop("scopes", ["orders:read"]), auth_method=method, **extra)
cc = client("faults secret", "client_secret_basic")
jwt_client = client("faults jwt", "private_key_jwt")
client_credential_add_public_key(client=jwt_client, jwk=INPUT["jwk"])
rs = client("faults rs", "client_secret_basic", scopes=[], is_resource_server=True)
api = ApiResource.objects.create(audience=INPUT["audience"], name="Orders", slug="orders", owner=organisation)
api.introspectors.add(rs)
Scope.objects.update_or_create(name="orders:read", defaults={"api": api, "risk_level": "low"})
keyring.signing_key(settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG)
OUTPUT = {
    "cc": [cc.client_id, client_credential_issue_secret(client=cc).secret],
    "jwt": jwt_client.client_id,
    "rs": [rs.client_id, client_credential_issue_secret(client=rs).secret],
    "organisation": organisation.pk,
}
"""


@dataclass
class Seeded:
    cc: tuple[str, str]
    jwt_client_id: str
    rs: tuple[str, str]
    organisation: int
    key: Any


@pytest.fixture(scope="module")
def seeded(private_services: PrivateServices) -> Seeded:
    key = make_client_key("RS256")
    out = private_services.shell(SEED, jwk=key.public_jwk, audience=AUDIENCE)
    return Seeded(
        cc=tuple(out["cc"]), jwt_client_id=out["jwt"], rs=tuple(out["rs"]), organisation=out["organisation"], key=key
    )


@dataclass
class Answer:
    at: float
    status: int  # 0: no HTTP answer at all
    content_type: str = ""
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def clean_error(self) -> bool:
        """A 503 in RFC 6749 §5.2's JSON that the client may retry (RFC 6749 §4.1.2.1's code)."""
        return (
            self.status == 503
            and self.content_type.startswith("application/json")
            and isinstance(self.body, dict)
            and self.body.get("error") == "temporarily_unavailable"
            and self.headers.get("Retry-After", "").isdigit()
            and "no-store" in self.headers.get("Cache-Control", "")
        )


def answer_of(call: Callable[[], requests.Response]) -> Answer:
    try:
        response = call()
    except requests.RequestException as exc:
        return Answer(at=time.monotonic(), status=0, body=type(exc).__name__)
    content_type = response.headers.get("Content-Type", "")
    body: Any = response.text
    if "json" in content_type:
        with contextlib.suppress(ValueError):
            body = json.loads(response.content)
    return Answer(
        at=time.monotonic(),
        status=response.status_code,
        content_type=content_type,
        body=body,
        headers=dict(response.headers),
    )


def token_request(url: str, client: tuple[str, str]) -> Answer:
    return answer_of(
        lambda: requests.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "orders:read", "resource": AUDIENCE},
            auth=client,
            timeout=15,
        )
    )


def assertion_token_request(url: str, seeded: Seeded, assertion: str) -> Answer:
    return answer_of(
        lambda: requests.post(
            f"{url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "scope": "orders:read",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=15,
        )
    )


def introspect(url: str, seeded: Seeded, token: str) -> Answer:
    return answer_of(
        lambda: requests.post(f"{url}/oauth/introspect", data={"token": token}, auth=seeded.rs, timeout=15)
    )


def stored(services: PrivateServices, tokens: list[str]) -> int:
    """How many of ``tokens`` the database holds: by SHA-256 checksum (the token itself is never stored)."""
    checksums = [hashlib.sha256(token.encode()).hexdigest() for token in tokens]
    if not checksums:
        return 0
    rows = services.query(
        "SELECT count(*) FROM oauth2_provider_accesstoken WHERE token_checksum = ANY(%s)", (checksums,)
    )
    return int(rows[0][0])


class Stream:
    """Threads posting requests back to back until stopped; every answer is kept."""

    def __init__(self, call: Callable[[], Answer], threads: int = THREADS) -> None:
        self.call = call
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self.call()
            with self._lock:
                self.answers.append(answer)

    def __enter__(self) -> Stream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)


def by_status(answers: list[Answer]) -> dict[str, int]:
    return {str(status): count for status, count in sorted(Counter(a.status for a in answers).items())}


# ---- 1. PostgreSQL restarted under a stream of token requests --------------------------------


def test_a_postgresql_restart_costs_clean_503s_and_loses_no_token(private_services, seeded):
    services = private_services
    # Persistent connections (the production default): each worker must notice its broken one.
    server = services.start_server(
        "pg-restart",
        DATABASE_CONN_MAX_AGE="60",
        AUTHSERVER_RATE_LIMIT_TOKEN=UNLIMITED,
        AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP=UNLIMITED,
        AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN=UNLIMITED,
    )
    probes: dict[str, Answer] = {}
    try:
        workers = server.worker_pids()
        bearer = token_request(server.url, seeded.cc)
        assert bearer.status == 200, bearer.body
        started = time.monotonic()
        with Stream(lambda: token_request(server.url, seeded.cc)) as stream:
            wait_for(lambda: sum(a.status == 200 for a in stream.snapshot()) >= 20, what="tokens before the outage")
            down_at = time.monotonic()
            services.stop_postgres()
            try:
                wait_for(lambda: any(a.at > down_at and a.status != 200 for a in stream.snapshot()), what="a refusal")
                probes["readyz"] = answer_of(lambda: requests.get(f"{server.url}/readyz", timeout=15))
                probes["healthz"] = answer_of(lambda: requests.get(f"{server.url}/healthz", timeout=15))
                probes["api"] = answer_of(
                    lambda: requests.get(
                        f"{server.url}/api/v1/organisations",
                        headers={"Authorization": f"Bearer {bearer.body['access_token']}"},
                        timeout=15,
                    )
                )
                probes["introspect"] = introspect(server.url, seeded, bearer.body["access_token"])
                time.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))  # a real 3-second outage
            finally:
                services.start_postgres()
            up_at = time.monotonic()
            wait_for(
                lambda: any(a.at > up_at and a.status == 200 for a in stream.snapshot()),
                what="a 200 after the restart",
                seconds=RECOVERY_SECONDS,
                log=server.log,
            )
            recovered_at = min(a.at for a in stream.snapshot() if a.at > up_at and a.status == 200)
            time.sleep(2.0)  # keep streaming: after the recovery every answer is a 200 again
        answers = stream.snapshot()
        assert server.process.poll() is None, "the server is still up"
        assert server.worker_pids() == workers, "no worker was restarted"
    finally:
        server.stop()

    during = [a for a in answers if down_at < a.at <= up_at]
    after = [a for a in answers if a.at > recovered_at + 1.0]
    issued = [a.body["access_token"] for a in answers if a.status == 200]
    found = stored(services, issued)
    figures = {
        "requests": len(answers),
        "by_status": by_status(answers),
        "during_outage_by_status": by_status(during),
        "outage_seconds": round(up_at - down_at, 2),
        "recovery_seconds": round(recovered_at - up_at, 2),
        "tokens_answered_200": len(issued),
        "tokens_found_in_db": found,
        "probes": {name: probe.status for name, probe in probes.items()},
        "duration_seconds": round(time.monotonic() - started, 1),
    }
    record_figures("postgresql_restart_under_token_stream", figures)

    unclean = [(a.status, a.content_type, str(a.body)[:200]) for a in answers if a.status != 200 and not a.clean_error]
    assert not unclean, f"every failure is a clean 503 in OAuth JSON: {unclean[:5]} {figures}"
    assert any(a.clean_error for a in during), figures
    assert after, figures
    assert all(a.status == 200 for a in after), figures
    assert found == len(issued), f"every token answered 200 is in the database: {figures}"

    assert probes["healthz"].status == 200  # liveness: the process itself is fine
    assert probes["readyz"].status == 503
    assert probes["readyz"].body["checks"]["database"] == "unavailable"
    api = probes["api"]
    assert api.status == 503, (api.status, api.body)
    assert api.content_type.startswith("application/problem+json")
    assert api.body["status"] == 503
    assert api.headers["Retry-After"].isdigit()
    assert probes["introspect"].clean_error, (probes["introspect"].status, probes["introspect"].body)


# ---- 2. Redis stopped ------------------------------------------------------------------------


def test_with_redis_stopped_the_failure_modes_hold_and_nothing_is_a_500(private_services, seeded):
    services = private_services
    limits = {
        "AUTHSERVER_RATE_LIMIT_TOKEN": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN": UNLIMITED,
    }
    # The defaults (token closed, introspection open), and one that lets token requests through.
    closed = services.start_server("redis-closed", workers=1, **limits)
    opened = services.start_server(
        "redis-open", workers=1, AUTHSERVER_RATE_LIMIT_FAILURE_MODE="token=open,introspection=open", **limits
    )
    answers: dict[str, Answer] = {}
    try:
        token = token_request(closed.url, seeded.cc)
        assert token.status == 200, token.body
        access_token = token.body["access_token"]
        assert introspect(closed.url, seeded, access_token).body["active"] is True  # now cached in Redis
        used_before = seeded.key.assertion(seeded.jwt_client_id, f"{opened.url}/oauth/token")
        assert assertion_token_request(opened.url, seeded, used_before).status == 200

        services.stop_redis()
        try:
            down_at = time.monotonic()
            answers["token_closed"] = token_request(closed.url, seeded.cc)
            answers["token_open"] = token_request(opened.url, seeded.cc)
            answers["introspect_closed"] = introspect(closed.url, seeded, access_token)
            answers["introspect_open"] = introspect(opened.url, seeded, access_token)
            assertion = seeded.key.assertion(seeded.jwt_client_id, f"{opened.url}/oauth/token")
            answers["assertion"] = assertion_token_request(opened.url, seeded, assertion)
            answers["assertion_replayed"] = assertion_token_request(opened.url, seeded, assertion)
            answers["assertion_used_before"] = assertion_token_request(opened.url, seeded, used_before)
            answers["readyz"] = answer_of(lambda: requests.get(f"{closed.url}/readyz", timeout=15))
            answers["jwks"] = answer_of(lambda: requests.get(f"{closed.url}/oauth/jwks", timeout=15))
        finally:
            services.start_redis()
        up_at = time.monotonic()

        def recovered() -> bool:
            answers["token_closed_after"] = token_request(closed.url, seeded.cc)
            return answers["token_closed_after"].status == 200

        wait_for(recovered, what="token issuance after Redis is back", seconds=RECOVERY_SECONDS, log=closed.log)
        recovery = time.monotonic() - up_at
        fresh = seeded.key.assertion(seeded.jwt_client_id, f"{opened.url}/oauth/token")
        answers["assertion_after"] = assertion_token_request(opened.url, seeded, fresh)
        answers["assertion_after_replayed"] = assertion_token_request(opened.url, seeded, fresh)
    finally:
        closed.stop()
        opened.stop()

    figures = {
        "requests": len(answers),
        "by_status": by_status(list(answers.values())),
        "answers": {name: answer.status for name, answer in answers.items()},
        "outage_seconds": round(up_at - down_at, 2),
        "recovery_seconds": round(recovery, 2),
    }
    record_figures("redis_stopped", figures)

    assert not [name for name, answer in answers.items() if answer.status >= 500 and answer.status != 503], figures
    # Rate limits: token=closed refuses cleanly, token=open lets the request through unmetered.
    assert answers["token_closed"].clean_error, answers["token_closed"].body
    assert answers["token_open"].status == 200, answers["token_open"].body
    # Introspection answers from the database (cache miss, then the database), on both servers.
    assert answers["introspect_closed"].status == 200
    assert answers["introspect_closed"].body["active"] is True
    assert answers["introspect_open"].status == 200
    assert answers["introspect_open"].body["active"] is True
    # The replay cache fails closed: without it no assertion is accepted, a replay least of all.
    for name in ("assertion", "assertion_replayed", "assertion_used_before"):
        assert answers[name].clean_error, (name, answers[name].status, answers[name].body)
    assert answers["readyz"].status == 503
    assert answers["readyz"].body["checks"]["cache"] == "unavailable"
    assert answers["jwks"].status == 200
    # Recovery without a restart; the replay cache works again.
    assert answers["token_closed_after"].status == 200
    assert answers["assertion_after"].status == 200, answers["assertion_after"].body
    assert answers["assertion_after_replayed"].status == 401
    assert answers["assertion_after_replayed"].body["error"] == "invalid_client"


# ---- 3. A Celery worker killed in the middle of a lifecycle job ------------------------------

REMINDERS = 300
SEED_REMINDERS = """
import secrets
from datetime import timedelta
from django.utils import timezone
from clients.models import ClientCredential
from clients.services import client_create
from onboarding.models import Organisation

organisation = Organisation.objects.get(pk=INPUT["organisation"])
organisation.contact_email = "owners@example.org"
organisation.save(update_fields=["contact_email"])
client = client_create(organisation=organisation, name="faults reminders", grant_type="client_credentials",
                       scopes=["orders:read"], auth_method="client_secret_basic")
now = timezone.now()
ClientCredential.objects.bulk_create(
    ClientCredential(client=client, kind=ClientCredential.Kind.SECRET, secret_hash=secrets.token_hex(32),
                     hint=f"k{n:05d}", expires_at=now + timedelta(days=5, minutes=n))
    for n in range(INPUT["count"])
)
OUTPUT = client.pk
"""
REMINDER_EVENT = "client.credential.expiry_reminder_sent"
MAIL_HINT = re.compile(r"ending in (k\d{5})")


class CeleryWorker:
    """A real worker on the private Redis, one task at a time (acks late, prefetch 1: settings)."""

    def __init__(self, services: PrivateServices, name: str) -> None:
        self.log = services.root / f"{name}.log"
        command = [sys.executable, "-m", "celery", "-A", "authserver", "worker", "--pool", "solo"]
        command += ["--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        command += ["--loglevel", "INFO"]
        env = services.env(
            EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend",
            DATABASE_CONN_MAX_AGE="0",
            CELERY_TASK_DEFAULT_QUEUE="faults",
        )
        command += ["--queues", "faults"]
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        services.children.append(self.process)
        wait_for(lambda: " ready." in self.log.read_text() or self.process.poll() is not None, what=name, log=self.log)
        assert self.process.poll() is None, self.log.read_text()[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def send_task(services: PrivateServices, task_name: str) -> None:
    from authserver.celery import app

    with app.connection_for_write(services.broker_url) as broker:
        app.send_task(task_name, queue="faults", connection=broker)


def test_a_worker_killed_mid_job_leaves_work_the_next_run_completes_once(private_services, seeded):
    from clients.tasks import credentials_remind_expiring_task

    services = private_services
    client_pk = services.shell(SEED_REMINDERS, organisation=seeded.organisation, count=REMINDERS)

    def reminded() -> int:
        rows = services.query(
            "SELECT count(*) FROM clients_clientcredential WHERE client_id = %s AND expiry_reminder_days IS NOT NULL",
            (client_pk,),
        )
        return int(rows[0][0])

    first = CeleryWorker(services, "faults-worker-1")
    try:
        send_task(services, credentials_remind_expiring_task.name)
        wait_for(lambda: reminded() >= REMINDERS // 5, what="the job to be under way", log=first.log)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        done_at_kill = reminded()
    finally:
        first.stop()
    assert 0 < done_at_kill < REMINDERS, f"the kill must land mid-job ({done_at_kill} of {REMINDERS} done)"

    second = CeleryWorker(services, "faults-worker-2")
    try:
        # Beat sends the job again at its next tick; a second run on top changes nothing.
        send_task(services, credentials_remind_expiring_task.name)
        wait_for(lambda: reminded() == REMINDERS, what="every reminder recorded", log=second.log)
        send_task(services, credentials_remind_expiring_task.name)

        def mails() -> Counter[str]:
            text = first.log.read_text() + second.log.read_text()
            return Counter(MAIL_HINT.findall(text))

        # The mails of the rows recorded by the killed run were queued on commit; the new worker
        # sends them. Done when the queue is empty and every task the worker took has finished.
        broker = redis.Redis.from_url(services.broker_url)

        def drained() -> bool:
            text = second.log.read_text()
            return broker.llen("faults") == 0 and text.count("] received") == text.count("] succeeded in")

        wait_for(lambda: len(mails()) >= REMINDERS - 1 and drained(), what="the reminder mails", log=second.log)
        broker.close()
    finally:
        second.stop()

    audit = services.query(
        "SELECT target_id, count(*) FROM authserver_auditevent WHERE event = %s GROUP BY target_id", (REMINDER_EVENT,)
    )
    sent = mails()
    figures = {
        "rows": REMINDERS,
        "done_when_killed": done_at_kill,
        "rows_reminded": reminded(),
        "audit_rows": sum(count for _target, count in audit),
        "audit_rows_doubled": sum(1 for _target, count in audit if count > 1),
        "mails": sum(sent.values()),
        "mails_doubled": sum(1 for count in sent.values() if count > 1),
        "rows_without_mail": REMINDERS - len(sent),
    }
    record_figures("celery_worker_killed_mid_job", figures)
    assert figures["rows_reminded"] == REMINDERS, figures
    assert figures["audit_rows"] == REMINDERS, figures
    assert figures["audit_rows_doubled"] == 0, figures
    assert figures["mails_doubled"] == 0, figures
    # A row's mail is queued right after its commit: a kill between the two loses that one mail
    # (at most once, never twice); every other row's mail is sent.
    assert figures["rows_without_mail"] <= 1, figures


# ---- 4. A signing-key rotation while tokens are verified -------------------------------------


ROTATE = "from authserver.tasks import rotate_signing_keys_task; rotate_signing_keys_task()"


def test_a_signing_key_rotation_breaks_no_verification(private_services, seeded):
    services = private_services
    limits = {
        "AUTHSERVER_RATE_LIMIT_TOKEN": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_INTROSPECTION": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_INTROSPECTION_PER_IP": UNLIMITED,
    }
    # Rotation due at once, pre-publication done by the first run of the job (below).
    due = services.env(AUTHSERVER_SIGNING_KEY_ROTATION_DAYS="0", AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS="0")
    services.manage("shell", "-c", ROTATE)  # publishes the next keys, rotates nothing yet
    server = services.start_server("rotation", **limits)
    failures: list[str] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    try:
        before = token_request(server.url, seeded.cc)
        assert before.status == 200, before.body
        kid_before = _kid(before.body["access_token"])
        jwt_validator = TokenValidator(server.url, AUDIENCE, allow_insecure_http=True, jwks_min_age=0)
        introspector = TokenValidator(
            server.url,
            AUDIENCE,
            mode="introspection",
            client_id=seeded.rs[0],
            client_secret=seeded.rs[1],
            allow_insecure_http=True,
        )
        tokens = [before.body["access_token"]]
        stop = threading.Event()

        def verify_forever() -> None:
            while not stop.is_set():
                answer = token_request(server.url, seeded.cc)
                with lock:
                    counts[f"token_{answer.status}"] += 1
                    if answer.status == 200:
                        tokens.append(answer.body["access_token"])
                    pool = [tokens[0], tokens[-1]]
                for token in pool:
                    for name, validator in (("jwt", jwt_validator), ("introspection", introspector)):
                        try:
                            validator.verify(token)
                            outcome = f"{name}_ok"
                        except InvalidToken as exc:
                            outcome = f"{name}_failed"
                            with lock:
                                failures.append(f"{name} kid={_kid(token)}: {exc}")
                        except Exception as exc:
                            outcome = f"{name}_error"
                            with lock:
                                failures.append(f"{name} kid={_kid(token)}: {type(exc).__name__}: {exc}")
                        with lock:
                            counts[outcome] += 1

        threads = [threading.Thread(target=verify_forever, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: counts["jwt_ok"] >= 20, what="verifications before the rotation")
            # The beat job, with the key now due: the pre-published next key becomes active.
            services.manage("shell", "-c", ROTATE, env=due)
            rotated_at = time.monotonic()
            # The server's keyring reloads within its TTL (10 s): wait for a token of the new key.
            wait_for(
                lambda: _kid(tokens[-1]) != kid_before,
                what="a token signed with the new key",
                seconds=20,
                log=server.log,
            )
            new_key_after = time.monotonic() - rotated_at
            verified = counts["jwt_ok"]
            wait_for(lambda: counts["jwt_ok"] >= verified + 20, what="verifications after the rotation", seconds=20)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        kids = sorted({_kid(token) for token in tokens})
    finally:
        server.stop()

    figures = {
        "verifications": dict(sorted(counts.items())),
        "failures": len(failures),
        "tokens_issued": len(tokens),
        "kids": len(kids),
        "seconds_to_new_key": round(new_key_after, 2),
    }
    record_figures("signing_key_rotation_under_verification", figures)
    assert not failures, f"{failures[:5]} {figures}"
    assert len(kids) >= 2, "tokens of the old and the new key were both verified"
    assert counts["token_200"]
    assert not [name for name in counts if name.startswith("token_") and name != "token_200"]


def _kid(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token).get("kid"))


# ---- the middleware, without services ---------------------------------------------------------


def _raises(exc: Exception):
    def view(request):
        raise exc

    return view


@pytest.mark.parametrize("exc", [OperationalError("connection refused"), InterfaceError("connection already closed")])
@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/jwks", "/oauth/register"])
def test_a_database_outage_on_an_oauth_endpoint_is_a_503_in_rfc6749_json(path, exc):
    middleware = DatabaseUnavailableMiddleware(_raises(exc))
    response = middleware.process_exception(RequestFactory().post(path), exc)
    assert response is not None
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"] == "temporarily_unavailable"
    assert response["Retry-After"].isdigit()
    assert response["Cache-Control"] == "no-store"


def test_a_database_outage_on_the_rest_api_is_a_503_problem_without_the_query():
    request = RequestFactory().get("/api/v1/organisations?access_token=secret")
    response = DatabaseUnavailableMiddleware(_raises(OperationalError())).process_exception(request, OperationalError())
    assert response is not None
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["status"] == 503
    assert body["instance"] == "/api/v1/organisations"
    assert "secret" not in response.content.decode()


def test_a_database_outage_on_a_page_is_a_503_page():
    response = DatabaseUnavailableMiddleware(_raises(OperationalError())).process_exception(
        RequestFactory().get("/portal/"), OperationalError()
    )
    assert response is not None
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"Temporarily unavailable" in response.content


def test_other_exceptions_are_left_to_django():
    middleware = DatabaseUnavailableMiddleware(_raises(ValueError()))
    assert middleware.process_exception(RequestFactory().get("/oauth/token"), ValueError("boom")) is None


def test_the_whole_stack_answers_503_with_its_headers(client, monkeypatch):
    """Through every middleware: the security headers and the request id are on the 503 too."""
    from authserver import ratelimit

    def unreachable(request):
        raise OperationalError("connection to server failed")

    monkeypatch.setattr(ratelimit, "token_request", unreachable)
    response = client.post("/oauth/token", {"grant_type": "client_credentials"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response["Cache-Control"] == "no-store"
    assert response["X-Request-ID"]
    assert response["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_rest_api_handler_answers_503_problem_details(rf):
    from rest_framework.request import Request

    from authserver.api.problems import exception_handler

    request = Request(rf.get("/api/v1/organisations"))
    response = exception_handler(OperationalError("server closed the connection"), {"request": request})
    assert response.status_code == 503
    assert response.data["status"] == 503
    assert response["Retry-After"].isdigit()
