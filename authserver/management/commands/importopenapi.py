"""manage.py importopenapi <api-slug> <file>: fill an API's endpoints from its OpenAPI document."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver.catalogue import MAX_DOCUMENT_BYTES, api_import_openapi
from authserver.errors import DomainError
from authserver.models import ApiResource


class Command(BaseCommand):
    help = (
        "Import an OpenAPI 3.0/3.1 document (JSON or YAML) into an API of the catalogue: its endpoints and "
        "the scopes each needs, from the security requirements. Endpoints no longer in the document are removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("api", help="The API's slug, as in /apis/<slug>/")
        parser.add_argument("file", help="The OpenAPI document; - reads standard input")
        parser.add_argument(
            "--claim-scopes",
            action="store_true",
            help="Scopes already in the catalogue without an API become this API's (else the import is refused)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        api = ApiResource.objects.filter(slug=options["api"]).first()
        if api is None:
            raise CommandError(f"No API with the slug {options['api']!r}.")
        document = self._read(options["file"])
        try:
            result = api_import_openapi(api=api, document=document, actor=None, claim_scopes=options["claim_scopes"])
        except DomainError as exc:
            raise CommandError(f"Nothing imported: {exc}") from exc
        self.stdout.write(f"{api.name}: {result.summary()}")

    @staticmethod
    def _read(name: str) -> bytes:
        try:
            if name == "-":
                data = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
            else:
                with Path(name).open("rb") as handle:
                    data = handle.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"Cannot read {name}: {exc.strerror or exc}.") from exc
        if len(data) > MAX_DOCUMENT_BYTES:
            raise CommandError(f"{name} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.")
        return data
