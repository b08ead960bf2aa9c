from django.apps import AppConfig


class AuthserverConfig(AppConfig):
    name = "authserver"
    verbose_name = "Runtime"

    def ready(self) -> None:
        from . import checks, metrics, ratelimit  # noqa: F401  (checks and ratelimit register system checks)

        metrics.connect_signals()
        ratelimit.connect_signals()
        from .oauth import introspection

        introspection.connect_signals()  # cached introspection answers dropped on revocation
        from .oauth import issuance  # noqa: F401  (its receivers drop the cached catalogue on change)
