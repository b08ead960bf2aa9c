"""The onboarding REST API for organisation representatives (/api/v1/), on the kernel in authserver/api."""
