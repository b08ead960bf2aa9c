"""WSGI entry point: ``gunicorn --chdir bench/references/dot_vanilla dot_vanilla.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dot_vanilla.settings")
application = get_wsgi_application()
