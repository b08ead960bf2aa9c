"""manage.py signingkey create|list|rotate|retire: the operator's handle on signing keys."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver import services
from authserver.errors import DomainError
from authserver.models import SigningKey


class Command(BaseCommand):
    help = "Manage the keys that sign access and ID tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key (published as next unless --activate)")
        create.add_argument("--alg", choices=SigningKey.Algorithm.values, default="RS256")
        create.add_argument("--activate", action="store_true", help="Sign with it at once")
        sub.add_parser("list", help="List keys as JSON")
        rotate = sub.add_parser("rotate", help="Promote the next key and pre-publish a new one")
        rotate.add_argument("--alg", choices=SigningKey.Algorithm.values, default="RS256")
        retire = sub.add_parser("retire", help="Stop signing with a key (it stays published for a while)")
        retire.add_argument("kid")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            action = options["action"]
            if action == "create":
                status = SigningKey.Status.ACTIVE if options["activate"] else SigningKey.Status.NEXT
                key = services.signing_key_create(alg=options["alg"], status=status)
                self._print([key])
            elif action == "list":
                self._print(SigningKey.objects.all())
            elif action == "rotate":
                key = services.signing_key_rotate(alg=options["alg"])
                self._print([key])
            elif action == "retire":
                found = SigningKey.objects.filter(kid=options["kid"]).first()
                if found is None:
                    raise CommandError(f"no signing key with kid {options['kid']!r}")
                self._print([services.signing_key_retire(key_id=found.pk)])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc

    def _print(self, keys: Any) -> None:
        rows = [
            {
                "kid": key.kid,
                "alg": key.alg,
                "status": key.status,
                "created_at": key.created_at.isoformat(),
                "activated_at": key.activated_at.isoformat() if key.activated_at else None,
                "retired_at": key.retired_at.isoformat() if key.retired_at else None,
            }
            for key in keys
        ]
        self.stdout.write(json.dumps(rows, indent=2))
