"""The clients REST API for organisation members (/api/v1/), on the kernel in authserver/api."""
