"""The shared kernel of every REST API of the server (DRF).

Each layer's API (``onboarding/api/``, later ``clients/api/``) builds on these pieces, so all
of them answer the same way (STANDARDS.md, ADR):

- ``problems``: RFC 9457 problem details for every error, one exception handler;
- ``views``: the base mixin: 415 for unexpected request content types, ``Cache-Control:
  no-store`` and ``API-Version`` on every response, the catch-all 404 and the OpenAPI views;
- ``authentication`` and ``permissions``: a session (with CSRF) or an OAuth 2.0 bearer token
  issued by this server, never one in the query string; a token must carry the view's scope
  and belong to a person;
- ``pagination``, ``converters`` and ``schema`` (drf-spectacular).
"""
