from django.apps import AppConfig


class AuthserverConfig(AppConfig):
    name = "authserver"
    verbose_name = "Runtime"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
