from django.apps import AppConfig


class AuthserverConfig(AppConfig):
    name = "authserver"
    verbose_name = "Runtime"

    def ready(self) -> None:
        from . import checks, metrics  # noqa: F401  (checks registers the system checks)

        metrics.connect_signals()
