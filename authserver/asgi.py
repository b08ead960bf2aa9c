"""ASGI entry point. Refuses to start a production deployment that is not safe to run."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")

application = get_asgi_application()

from authserver.checks import assert_production_ready  # noqa: E402

assert_production_ready()
