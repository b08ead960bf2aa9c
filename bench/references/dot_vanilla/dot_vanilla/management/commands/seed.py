"""``manage.py seed``: migrate, then (re)create the fixture's confidential clients as DOT Applications.

Env: BENCH_FIXTURE (the harness's fixture JSON), DOT_HASH=true|false (default true, DOT's
default: the secret stored as a Django password hash and checked with PBKDF2 on every
request; false stores it as given). Only the fixture's ``basic`` and ``introspector``
clients are made: DOT has no private_key_jwt client authentication. Running it again
replaces those two applications and, with them, their tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import environ
import psycopg
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from oauth2_provider.models import get_application_model
from psycopg import sql

SECRET_CLIENTS = ("basic", "introspector")


def database_ensure() -> None:
    """Create the configured PostgreSQL database when it does not exist yet."""
    db = settings.DATABASES["default"]
    params = {"host": db["HOST"], "port": db["PORT"] or None, "user": db["USER"], "password": db["PASSWORD"] or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))


@transaction.atomic
def applications_replace(*, clients: dict[str, dict[str, Any]], hash_secret: bool) -> list[str]:
    """Delete and recreate one client-credentials application per fixture secret client."""
    application_model = get_application_model()
    client_ids = []
    for name in SECRET_CLIENTS:
        client = clients[name]
        application_model.objects.filter(client_id=client["client_id"]).delete()
        application_model.objects.create(
            name=f"bench {name}",
            client_id=client["client_id"],
            client_secret=client["client_secret"],
            hash_client_secret=hash_secret,
            client_type=application_model.CLIENT_CONFIDENTIAL,
            authorization_grant_type=application_model.GRANT_CLIENT_CREDENTIALS,
        )
        client_ids.append(client["client_id"])
    return client_ids


class Command(BaseCommand):
    help = "Migrate, then (re)create the fixture's basic and introspector clients (env BENCH_FIXTURE, DOT_HASH)."

    def handle(self, *args: Any, **options: Any) -> None:
        env = environ.Env()
        fixture = json.loads(Path(env.str("BENCH_FIXTURE")).read_text())
        hash_secret = env.bool("DOT_HASH", default=True)
        if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
            database_ensure()
        call_command("migrate", verbosity=0, interactive=False)
        client_ids = applications_replace(clients=fixture["clients"], hash_secret=hash_secret)
        self.stdout.write(f"seeded {', '.join(client_ids)} (hash_client_secret={hash_secret})")
