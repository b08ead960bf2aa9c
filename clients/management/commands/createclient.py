"""manage.py createclient: register a client from a script (like ``hydra create client``).

Prints the client as JSON; a secret, when one is issued, is shown in that output once and
stored only as a keyed hash.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from authserver.errors import DomainError
from clients.models import Client
from clients.services import (
    client_create,
    client_credential_add_certificate,
    client_credential_add_public_key,
    client_credential_issue_secret,
)
from onboarding.models import Organisation


class _OneGrantType(argparse.Action):
    """Refuse a repeated --grant-type: argparse would silently keep the last one."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error("a client has exactly one grant type (OAUTH-NL); give --grant-type once")
        setattr(namespace, self.dest, values)


class Command(BaseCommand):
    help = "Register an OAuth client with one grant type and print its credentials once, as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organisation", required=True, help="Organisation id, OIN or KvK number")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--grant-type", required=True, choices=["client_credentials", "authorization_code"], action=_OneGrantType
        )
        parser.add_argument("--scope", action="append", default=[], help="Repeat, or give space-separated scopes")
        parser.add_argument("--redirect-uri", action="append", default=[])
        parser.add_argument("--post-logout-redirect-uri", action="append", default=[])
        parser.add_argument(
            "--auth-method", choices=Client.AuthMethod.values, default=Client.AuthMethod.PRIVATE_KEY_JWT
        )
        parser.add_argument("--jwk-file", help="Public JWK (or JWKS) for private_key_jwt")
        parser.add_argument(
            "--tls-subject-dn", help="Subject DN (RFC 4514) of the client certificate, for tls_client_auth"
        )
        parser.add_argument(
            "--certificate-file",
            help="PEM client certificate, for self_signed_tls_client_auth (or tls_client_auth)",
        )
        parser.add_argument("--client-id", help="Use this client id (scripted set-ups)")
        parser.add_argument("--client-secret", help="Use this secret (at least 32 characters)")
        parser.add_argument("--environment", choices=Client.Environment.values, default=Client.Environment.PRODUCTION)
        parser.add_argument("--resource-server", action="store_true", help="May call the introspection endpoint")
        parser.add_argument("--pairwise", action="store_true", help="Pairwise subject identifiers (OIDC §8)")

    def _organisation(self, reference: str) -> Organisation:
        organisation = None
        if reference.isdigit() and len(reference) < 8:
            organisation = Organisation.objects.filter(pk=int(reference)).first()
        organisation = organisation or Organisation.objects.filter(oin=reference).first()
        organisation = organisation or Organisation.objects.filter(kvk_number=reference).first()
        if organisation is None:
            raise CommandError(f"no organisation with id, OIN or KvK number {reference!r}")
        return organisation

    def _jwks(self, path: str) -> list[dict[str, Any]]:
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read a JWK from {path}: {exc}") from exc
        keys = document.get("keys") if isinstance(document, dict) and "keys" in document else [document]
        if not isinstance(keys, list) or not keys:
            raise CommandError(f"{path} holds no JWK")
        return keys

    def handle(self, *args: Any, **options: Any) -> None:
        method = options["auth_method"]
        if options["client_secret"] and method not in ("client_secret_basic", "client_secret_post"):
            raise CommandError("--client-secret needs --auth-method client_secret_basic or client_secret_post")
        if options["jwk_file"] and method != "private_key_jwt":
            raise CommandError("--jwk-file needs --auth-method private_key_jwt")
        if options["tls_subject_dn"] and method != "tls_client_auth":
            raise CommandError("--tls-subject-dn needs --auth-method tls_client_auth")
        if options["certificate_file"] and method not in Client.MTLS_METHODS:
            raise CommandError("--certificate-file needs --auth-method tls_client_auth or self_signed_tls_client_auth")
        certificate_pem = None
        if options["certificate_file"]:
            try:
                certificate_pem = Path(options["certificate_file"]).read_bytes()
            except OSError as exc:
                raise CommandError(f"cannot read {options['certificate_file']}: {exc}") from exc
        organisation = self._organisation(options["organisation"])
        scopes = [scope for value in options["scope"] for scope in value.split()]
        jwks = self._jwks(options["jwk_file"]) if options["jwk_file"] else []
        try:
            with transaction.atomic():
                client = client_create(
                    organisation=organisation,
                    name=options["name"],
                    grant_type=options["grant_type"],
                    scopes=scopes,
                    redirect_uris=options["redirect_uri"],
                    post_logout_redirect_uris=options["post_logout_redirect_uri"],
                    auth_method=method,
                    client_id=options["client_id"],
                    environment=options["environment"],
                    is_resource_server=options["resource_server"],
                    subject_type=Client.SubjectType.PAIRWISE if options["pairwise"] else Client.SubjectType.PUBLIC,
                )
                result: dict[str, Any] = {
                    "client_id": client.client_id,
                    "name": client.name,
                    "organisation": organisation.name,
                    "grant_type": options["grant_type"],
                    "token_endpoint_auth_method": method,
                    "scope": client.scope,
                    "redirect_uris": client.redirect_uris.split(),
                }
                if client.uses_client_secret:
                    issued = client_credential_issue_secret(client=client, secret=options["client_secret"])
                    result["client_secret"] = issued.secret
                    expires_at = issued.credential.expires_at
                    # RFC 7591 §3.2.1: 0 means the secret does not expire.
                    result["client_secret_expires_at"] = int(expires_at.timestamp()) if expires_at else 0
                if certificate_pem is not None:
                    credential = client_credential_add_certificate(client=client, certificate_pem=certificate_pem)
                    result["tls_client_certificate_thumbprint"] = credential.thumbprint
                if options["tls_subject_dn"]:
                    credential = client_credential_add_certificate(client=client, subject_dn=options["tls_subject_dn"])
                    result["tls_client_auth_subject_dn"] = credential.subject_dn
                for jwk in jwks:
                    credential = client_credential_add_public_key(client=client, jwk=jwk)
                    result.setdefault("key_ids", []).append(credential.kid)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        if method in Client.MTLS_METHODS and certificate_pem is None and not options["tls_subject_dn"]:
            self.stderr.write("note: no certificate or subject DN registered yet; the client cannot authenticate.")
        if method == "private_key_jwt" and not jwks:
            self.stderr.write("note: no public key registered yet; the client cannot authenticate until one is.")
        self.stdout.write(json.dumps(result, indent=2))
