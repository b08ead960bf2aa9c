"""Client fixtures: tasks enqueued on commit run eagerly in the test process."""

from __future__ import annotations

import pytest

from authserver.celery import app


@pytest.fixture(autouse=True)
def eager_tasks():
    saved = app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.get("CELERY_TASK_EAGER_PROPAGATES", False)
    app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.CELERY_TASK_EAGER_PROPAGATES = True, True
    yield
    app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.CELERY_TASK_EAGER_PROPAGATES = saved
