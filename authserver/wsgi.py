"""WSGI entry point. Refuses to start a production deployment that is not safe to run."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")

application = get_wsgi_application()

from authserver.checks import assert_production_ready  # noqa: E402

assert_production_ready()
