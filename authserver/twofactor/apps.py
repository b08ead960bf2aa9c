from django.contrib.admin.apps import AdminConfig


class OTPAdminConfig(AdminConfig):
    """django.contrib.admin with our OTP-only site as ``admin.site``.

    Every ``admin.site.register`` call, including django-oauth-toolkit's (which registers the
    Client admin from OAUTH2_PROVIDER["APPLICATION_ADMIN_CLASS"]), lands on this site.
    """

    default_site = "authserver.twofactor.site.OTPRequiredAdminSite"
