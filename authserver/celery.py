"""The Celery app. Tasks are thin (STYLE.md §5): ids in, one service call, a count out."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")

app = Celery("authserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
