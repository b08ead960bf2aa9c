"""Path converters for API URLs.

``<id:...>`` matches database ids only: 1 to 18 digits, so a guessed id never overflows a
PostgreSQL bigint (a 500) and simply finds nothing (a 404).
"""

from __future__ import annotations

from django.urls import register_converter

MAX_ID = 10**18 - 1


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int | str) -> str:
        return str(value)


register_converter(IdConverter, "id")

# drf-spectacular: how the converter appears in the OpenAPI document (PATH_CONVERTER_OVERRIDES).
ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
