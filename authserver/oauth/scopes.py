"""DOT's scope backend: what a client may ask for is what it was granted."""

from __future__ import annotations

from typing import Any

from django.conf import settings


class _Descriptions(dict):
    """Known scope descriptions; an unknown scope is described by its name."""

    def __missing__(self, key: str) -> str:
        return key


class ClientScopes:
    def get_all_scopes(self) -> dict[str, str]:
        return _Descriptions(settings.OAUTH2_PROVIDER["SCOPES"])

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        return application.scopes if application is not None else []

    def get_default_scopes(self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any) -> list[str]:
        return application.scopes if application is not None else []
