from django.apps import AppConfig


class AuthserverConfig(AppConfig):
    name = "authserver"
    verbose_name = "Runtime"

    def ready(self) -> None:
        from . import checks, hotcache, metrics, ratelimit  # noqa: F401  (checks and ratelimit register system checks)

        metrics.connect_signals()
        hotcache.connect_signals()  # process-local copies of clients, catalogue, tiers dropped on change
        from .oauth import introspection

        introspection.connect_signals()  # cached introspection answers dropped on revocation
