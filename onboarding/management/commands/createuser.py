"""manage.py createuser: an end user who can sign in at the authorization endpoint."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Create an end user. Without --password one is generated and printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument("--first-name", default="")
        parser.add_argument("--last-name", default="")
        parser.add_argument("--password", help="Read from the environment in scripts; shown nowhere")
        parser.add_argument("--staff", action="store_true", help="Staff member (admin access, needs 2FA later)")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = options["username"].strip()
        if not username:
            raise CommandError("--username must not be empty")
        if User.objects.filter(username=username).exists():
            raise CommandError(f"a user named {username!r} exists already")
        generated = options["password"] is None
        password = secrets.token_urlsafe(18) if generated else options["password"]
        user = User(
            username=username,
            email=options["email"],
            first_name=options["first_name"],
            last_name=options["last_name"],
            is_staff=options["staff"] or options["superuser"],
            is_superuser=options["superuser"],
        )
        try:
            user.full_clean(exclude=["password"])
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        user.set_password(password)
        user.save()
        result = {"username": user.username, "subject_id": str(user.subject_id)}
        if generated:
            result["password"] = password
        self.stdout.write(json.dumps(result, indent=2))
