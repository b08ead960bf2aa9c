"""manage.py createorganisation: register an organisation from a script or a shell."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver.errors import DomainError
from onboarding.models import Organisation
from onboarding.services import organisation_create


class Command(BaseCommand):
    help = "Create an organisation and print it as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", choices=Organisation.Kind.values, default=Organisation.Kind.PRIVATE)
        parser.add_argument("--oin", default="")
        parser.add_argument("--kvk", dest="kvk_number", default="")
        parser.add_argument("--rsin", default="")
        parser.add_argument("--eidas", dest="eidas_identifier", default="", help="eIDAS legal identifier (foreign)")
        parser.add_argument("--country", default="NL", help="ISO 3166-1 alpha-2")
        parser.add_argument("--contact-email", default="")
        parser.add_argument("--status", choices=Organisation.Status.values, default=Organisation.Status.ACTIVE)
        parser.add_argument(
            "--trust-level", choices=Organisation.TrustLevel.values, default=Organisation.TrustLevel.LOW
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organisation = organisation_create(
                name=options["name"],
                kind=options["kind"],
                oin=options["oin"],
                kvk_number=options["kvk_number"],
                rsin=options["rsin"],
                eidas_identifier=options["eidas_identifier"],
                country=options["country"],
                contact_email=options["contact_email"],
                status=options["status"],
                trust_level=options["trust_level"],
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            json.dumps(
                {
                    "id": organisation.pk,
                    "name": organisation.name,
                    "kind": organisation.kind,
                    "status": organisation.status,
                    "trust_level": organisation.trust_level,
                    "oin": organisation.oin,
                    "kvk_number": organisation.kvk_number,
                },
                indent=2,
            )
        )
