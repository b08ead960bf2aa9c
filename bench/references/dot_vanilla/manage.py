#!/usr/bin/env python
"""Management commands of the vanilla django-oauth-toolkit reference server (``seed``, ``migrate``)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dot_vanilla.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
