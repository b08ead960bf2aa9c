"""manage.py compliance [--strict] [--nginx-config FILE] [--json]: the profiles, item by item.

    manage.py compliance                                  # the settings this process runs with
    nginx -T 2>/dev/null | manage.py compliance --nginx-config - --strict

Run it with the same environment as the web processes. ``--strict`` exits non-zero when
anything is MISS (SKIP, an item this run cannot see, does not count).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver.compliance import MISS, PASS, SKIP, evaluate


class Command(BaseCommand):
    help = (
        "Report where the running configuration meets or misses the NL GOV OAuth profile, RFC 9700 "
        "and the NCSC TLS guidelines (PASS/MISS/SKIP per item)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--strict", action="store_true", help="Exit with status 1 when any item is MISS")
        parser.add_argument(
            "--nginx-config",
            metavar="FILE",
            help="Output of `nginx -T` (the running nginx configuration) to check the TLS rules on; - for stdin",
        )
        parser.add_argument("--json", action="store_true", help="One JSON document instead of the table")

    def handle(self, *args: Any, **options: Any) -> None:
        dump = None
        if options["nginx_config"] == "-":
            dump = sys.stdin.read()
        elif options["nginx_config"]:
            try:
                with open(options["nginx_config"], encoding="utf-8") as handle:
                    dump = handle.read()
            except OSError as exc:
                raise CommandError(f"Cannot read {options['nginx_config']}: {exc}") from None
        findings = evaluate(nginx_dump=dump)
        counts = {status: sum(f.status == status for f in findings) for status in (PASS, MISS, SKIP)}
        if options["json"]:
            self.stdout.write(json.dumps({"findings": [asdict(f) for f in findings], "counts": counts}, indent=2))
        else:
            width = max(len(f.id) for f in findings)
            for finding in findings:
                line = f"{finding.status}  {finding.id:<{width}}  {finding.title}  [{finding.source}]"
                if finding.detail and finding.status != PASS:
                    line += f"\n      {finding.detail}"
                style = {PASS: self.style.SUCCESS, MISS: self.style.ERROR, SKIP: self.style.WARNING}[finding.status]
                self.stdout.write(style(line))
            self.stdout.write(
                f"{len(findings)} items: {counts[PASS]} pass, {counts[MISS]} miss, {counts[SKIP]} not visible here"
            )
        if options["strict"] and counts[MISS]:
            raise CommandError(f"{counts[MISS]} item(s) miss the profiles.", returncode=1)
