from django.apps import AppConfig


class ClientsConfig(AppConfig):
    name = "clients"
    verbose_name = "Client registration"

    def ready(self) -> None:
        from onboarding.signals import organisation_deactivated

        from .receivers import on_organisation_deactivated

        organisation_deactivated.connect(on_organisation_deactivated, dispatch_uid="clients.organisation_deactivated")
