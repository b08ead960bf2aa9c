"""The periodic jobs through a real Celery worker on Redis, as production runs them.

The worker is a subprocess on the test's own database and a queue of its own (named after the
xdist worker, plus a random part), so parallel test processes never take each other's tasks.
Results are ignored (CELERY_TASK_IGNORE_RESULT): the test looks for the effects in the database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from oauth2_provider.models import Grant

from authserver.celery import app
from authserver.models import SigningKey
from authserver.tasks import clear_expired_tokens_task, rotate_signing_keys_task
from clients import tasks as clients_tasks
from onboarding import tasks as onboarding_tasks

from ..conftest import REDIRECT_URI

BROKER_URL = os.environ.get("AUTHSERVER_TEST_WORKER_BROKER_URL", "redis://127.0.0.1:6379/14")
WAIT_SECONDS = 60.0


def database_url() -> str:
    """The URL of the database this test runs on (the test database, not the configured one)."""
    db = connection.settings_dict
    assert db["ENGINE"] == "django.db.backends.postgresql", "the worker test needs PostgreSQL (make test)"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{quote(db['NAME'], safe='')}"


def wait_for(condition: Callable[[], bool], *, what: str, log: Path) -> None:
    """Poll ``condition`` (bounded): the worker runs in real time, so this waits, not sleeps for time."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:]
            pytest.fail(f"timed out after {WAIT_SECONDS:.0f}s waiting for {what}; worker log:\n{tail}")
        time.sleep(0.25)


@dataclass
class Worker:
    queue: str
    log: Path
    process: subprocess.Popen

    def send(self, task) -> None:
        with app.connection_for_write(BROKER_URL) as broker:
            task.apply_async(queue=self.queue, connection=broker)


@pytest.fixture
def celery_worker(transactional_db, tmp_path) -> Iterator[Worker]:
    queue = f"authserver-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(BROKER_URL)
    broker.ping()
    env = {
        **os.environ,
        "CELERY_BROKER_URL": BROKER_URL,
        # Tasks the worker's jobs enqueue (emails) stay on this queue, so this worker runs them.
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "AUTHSERVER_ENVIRONMENT": "test",
        "DJANGO_SETTINGS_MODULE": "authserver.settings",
    }
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "authserver", "worker", "--pool", "solo", "--queues", queue]
    command += ["--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    command += ["--loglevel", "INFO"]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: " ready." in log.read_text() or process.poll() is not None, what="the worker", log=log)
        assert process.poll() is None, f"the worker exited:\n{log.read_text()[-4000:]}"
        yield Worker(queue=queue, log=log, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Only this test's queue and its binding: other test processes may share the Redis db.
        for key in broker.scan_iter(match=f"*{queue}*"):
            broker.delete(key)
        broker.close()


def test_the_beat_schedule_names_tasks_the_worker_has():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    onboarding_lifecycle = {
        onboarding_tasks.kyc_applications_expire_stale_task.name,
        onboarding_tasks.organisations_remind_review_task.name,
        onboarding_tasks.organisations_suspend_lapsed_task.name,
        onboarding_tasks.memberships_end_expired_task.name,
        onboarding_tasks.invitations_expire_task.name,
        onboarding_tasks.evidence_warn_expiring_task.name,
    }
    clients_lifecycle = {
        clients_tasks.credentials_expire_due_task.name,
        clients_tasks.credentials_remind_expiring_task.name,
        clients_tasks.clients_expire_unused_open_task.name,
        clients_tasks.initial_access_tokens_expire_task.name,
    }
    assert scheduled == {
        clear_expired_tokens_task.name,
        rotate_signing_keys_task.name,
        *onboarding_lifecycle,
        *clients_lifecycle,
    }
    assert scheduled <= set(app.tasks)


@pytest.mark.worker
def test_periodic_jobs_run_on_a_real_worker(celery_worker, web_client, user):
    expired = Grant.objects.create(
        user=user,
        application=web_client.client,
        code=uuid.uuid4().hex,
        expires=timezone.now() - timedelta(minutes=1),
        redirect_uri=REDIRECT_URI,
        code_challenge=uuid.uuid4().hex + uuid.uuid4().hex,
        code_challenge_method="S256",
    )
    live = Grant.objects.create(
        user=user,
        application=web_client.client,
        code=uuid.uuid4().hex,
        expires=timezone.now() + timedelta(minutes=10),
        redirect_uri=REDIRECT_URI,
        code_challenge=uuid.uuid4().hex + uuid.uuid4().hex,
        code_challenge_method="S256",
    )
    assert not SigningKey.objects.exists()

    celery_worker.send(clear_expired_tokens_task)
    celery_worker.send(rotate_signing_keys_task)

    wait_for(
        lambda: not Grant.objects.filter(pk=expired.pk).exists(), what="the expired grant to go", log=celery_worker.log
    )
    algorithms = set(settings.AUTHSERVER_SIGNING_ALGORITHMS)
    wait_for(
        lambda: set(SigningKey.objects.filter(status=SigningKey.Status.NEXT).values_list("alg", flat=True))
        == algorithms,
        what="next signing keys",
        log=celery_worker.log,
    )
    assert Grant.objects.filter(pk=live.pk).exists()
    assert SigningKey.objects.count() == len(algorithms)
    assert celery_worker.process.poll() is None
