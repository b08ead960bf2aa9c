"""OPTIONS responses (DRF metadata); a module of its own because APIView reads it while DRF loads."""

from __future__ import annotations

from typing import Any

from rest_framework.metadata import SimpleMetadata
from rest_framework.request import Request


class ApiMetadata(SimpleMetadata):
    """OPTIONS says what a view renders and parses; the OpenAPI document describes the bodies.

    DRF's default would describe the POST body with the response serializer (and run the
    view's queries to do so); the schema at /api/schema is the one description of the bodies.
    """

    def determine_actions(self, request: Request, view: Any) -> dict[str, Any]:
        return {}
