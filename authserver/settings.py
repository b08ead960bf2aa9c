"""Settings for authserver, read from the environment (django-environ).

With no environment at all the server runs on embedded defaults: SQLite, a local-memory
cache and a Celery that needs no broker server (kombu's filesystem transport), so a newcomer
sees the whole system run. Production differences are environment values only; see the
configuration table in README.md. ``authserver.checks`` refuses a production start with an
http issuer, DEBUG on, or a default secret.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env") if (BASE_DIR / ".env").exists() else None

# development | test | production. Production turns the start-up refusals on.
AUTHSERVER_ENVIRONMENT = env.str("AUTHSERVER_ENVIRONMENT", default="development")
IS_PRODUCTION = AUTHSERVER_ENVIRONMENT == "production"

# Embedded defaults. They are public, so production refuses them (authserver.checks).
DEFAULT_SECRET_KEY = "insecure-embedded-default-secret-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=DEFAULT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=AUTHSERVER_ENVIRONMENT == "development")

DATA_DIR = Path(env.str("AUTHSERVER_DATA_DIR", default=str(BASE_DIR / "var")))


def _derived_key(purpose: str) -> str:
    """A key derived from SECRET_KEY for the embedded default only (never in production)."""
    digest = hashlib.sha256(f"authserver:{purpose}:{SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


# The issuer identifier (RFC 8414 §2, OIDC Discovery §3): the base of every URL we publish.
AUTHSERVER_ISSUER = env.str("AUTHSERVER_ISSUER", default="http://localhost:8000").rstrip("/")

# Fernet keys (comma-separated, newest first) that encrypt signing keys at rest.
AUTHSERVER_KEY_ENCRYPTION_KEYS = env.list("AUTHSERVER_KEY_ENCRYPTION_KEYS", default=[_derived_key("key-encryption")])
# HMAC key for client secrets (docs/decisions/0003-client-secret-hash.md). Changing it
# invalidates every issued secret, so it is separate from SECRET_KEY.
AUTHSERVER_SECRET_PEPPER = env.str("AUTHSERVER_SECRET_PEPPER", default=_derived_key("secret-pepper"))
# Salt for pairwise subject identifiers (OIDC Core §8.1).
AUTHSERVER_PAIRWISE_SALT = env.str("AUTHSERVER_PAIRWISE_SALT", default=_derived_key("pairwise"))

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # django.contrib.admin with the OTP-only admin site (authserver/twofactor).
    "authserver.twofactor.apps.OTPAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "rest_framework",
    "drf_spectacular",
    "oauth2_provider",
    "onboarding",
    "clients",
    "authserver",
]

MIDDLEWARE = [
    "authserver.middleware.MetricsMiddleware",
    "authserver.middleware.RequestContextMiddleware",
    "authserver.mtls.ClientCertificateMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "authserver.middleware.SecurityHeadersMiddleware",
    "authserver.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "authserver.urls"
WSGI_APPLICATION = "authserver.wsgi.application"
AUTH_USER_MODEL = "onboarding.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'authserver.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
# A reused connection is checked (one "SELECT 1") on each request's first query, so a process
# recovers from a database restart without a failed request; off saves that round trip per
# request (bench/RESULTS.md) at the price of one 503 per process after a restart.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process and the Celery worker use the file at the same time.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's, reusing one redis-py client per pool (authserver/cache.py).
            "BACKEND": "authserver.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("AUTHSERVER_CACHE_PREFIX", default="authserver"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = env.list(
    "PASSWORD_HASHERS",
    default=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
    ],
)

LOGIN_URL = "/accounts/login/"
# Admin 2FA (django-otp): the issuer label authenticator apps show; django-otp's own device
# admin hides TOTP keys and backup codes from other admins. Throttling stays at its default.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="authserver")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
LOGIN_REDIRECT_URL = "/portal/"
LOGOUT_REDIRECT_URL = "/"
# How long the link in a sign-up verification email works (onboarding/accounts.py).
ACCOUNT_VERIFICATION_MAX_AGE_HOURS = env.int("ACCOUNT_VERIFICATION_MAX_AGE_HOURS", default=72)

LANGUAGE_CODE = "en"
TIME_ZONE = "Europe/Amsterdam"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# EMAIL_URL (django-environ), e.g. smtp+tls://user:password@mail.example.org:587, configures SMTP.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="authserver@localhost")

# Transport hardening (ADR /core/transport, NCSC). TLS terminates at the proxy; Django trusts
# X-Forwarded-Proto only when a proxy is configured in front of it.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=IS_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=IS_PRODUCTION)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# A dedicated https-only host (and its subdomains) consents to browser preloading in
# production; set SECURE_HSTS_PRELOAD=false when the parent domain is not https-only.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=IS_PRODUCTION)
if env.bool("AUTHSERVER_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Proxies (IP addresses or CIDR networks) whose client-certificate headers Django believes
# (mutual TLS, RFC 8705: X-SSL-Client-Cert and X-SSL-Client-Verify from nginx's back channel).
# From any other peer the headers are dropped. Empty: no mutual TLS.
AUTHSERVER_TRUSTED_PROXIES = env.list("AUTHSERVER_TRUSTED_PROXIES", default=[])
# The same proxies' X-Forwarded-For gives the caller's address (network zones, audit, rate
# limits; authserver/network.py). Seconds the issuance policy's catalogue facts (scope rules,
# APIs, network zones) stay cached; every change to them through Django invalidates at once.
# 0: read them from the database on every token request.
AUTHSERVER_ISSUANCE_CACHE_SECONDS = env.int("AUTHSERVER_ISSUANCE_CACHE_SECONDS", default=30)
# Origins whose scripts may call token, userinfo, revoke and introspect (CORS by allow-list,
# ADR); discovery and the JWKS are open to every origin. Exact origins: https://app.example.nl
AUTHSERVER_CORS_ALLOWED_ORIGINS = env.list("AUTHSERVER_CORS_ALLOWED_ORIGINS", default=[])
# The base URL of the back channel (token, introspection, revocation, userinfo) when nginx
# serves it on its own host name (deploy/nginx/); empty: the issuer serves everything.
AUTHSERVER_BACKCHANNEL_URL = env.str("AUTHSERVER_BACKCHANNEL_URL", default="").rstrip("/")
# A bearer token Prometheus must send to /metrics; empty: /metrics answers anyone who can
# reach it (nginx does not expose it; see docs/operations.md).
AUTHSERVER_METRICS_TOKEN = env.str("AUTHSERVER_METRICS_TOKEN", default="")
SILENCED_SYSTEM_CHECKS = env.list(
    "SILENCED_SYSTEM_CHECKS",
    # security.W008: SECURE_SSL_REDIRECT; TLS is terminated and redirected by nginx (deploy/).
    default=["security.W008"],
)

# Token lifetimes in seconds (STANDARDS.md, OAUTH-NL §3.x "S" recommendations).
AUTHSERVER_ACCESS_TOKEN_LIFETIME = env.int("AUTHSERVER_ACCESS_TOKEN_LIFETIME", default=3600)
AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME = env.int("AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME", default=900)
AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME = env.int("AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME", default=6 * 3600)
AUTHSERVER_REFRESH_TOKEN_IDLE_LIFETIME = env.int("AUTHSERVER_REFRESH_TOKEN_IDLE_LIFETIME", default=6 * 3600)
AUTHSERVER_REFRESH_TOKEN_ABSOLUTE_LIFETIME = env.int("AUTHSERVER_REFRESH_TOKEN_ABSOLUTE_LIFETIME", default=24 * 3600)
AUTHSERVER_ID_TOKEN_LIFETIME = env.int("AUTHSERVER_ID_TOKEN_LIFETIME", default=300)
AUTHSERVER_AUTHORIZATION_CODE_LIFETIME = env.int("AUTHSERVER_AUTHORIZATION_CODE_LIFETIME", default=60)

# Signing keys: which algorithms we keep keys for, which one signs access tokens, how often
# keys rotate and how long a retired key stays published (longer than any token it signed).
AUTHSERVER_SIGNING_ALGORITHMS = env.list("AUTHSERVER_SIGNING_ALGORITHMS", default=["RS256", "PS256", "ES256"])
AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG = env.str("AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG", default="RS256")
AUTHSERVER_ID_TOKEN_SIGNING_ALG = env.str("AUTHSERVER_ID_TOKEN_SIGNING_ALG", default="RS256")
AUTHSERVER_SIGNING_KEY_ROTATION_DAYS = env.int("AUTHSERVER_SIGNING_KEY_ROTATION_DAYS", default=90)
# A next key is published this long before it signs anything: the JWKS cache lifetime.
AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS = env.int("AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS", default=7 * 24 * 3600)
AUTHSERVER_SIGNING_KEY_RETENTION_SECONDS = env.int("AUTHSERVER_SIGNING_KEY_RETENTION_SECONDS", default=7 * 24 * 3600)
AUTHSERVER_JWKS_MAX_AGE = env.int("AUTHSERVER_JWKS_MAX_AGE", default=3600)
AUTHSERVER_DISCOVERY_MAX_AGE = env.int("AUTHSERVER_DISCOVERY_MAX_AGE", default=3600)
# Introspection (RFC 7662; authserver/oauth/introspection.py, docs/decisions/0010): an active
# answer is cached per resource server for at most half the token's remaining lifetime and never
# longer than this; revocation drops it at once. 0: every call reads the database. Without
# REDIS_URL the cache is one process's memory, where a revocation by the worker or a manage.py
# command (another process) could not drop an answer: no caching by default then.
AUTHSERVER_INTROSPECTION_CACHE_SECONDS = max(
    0, env.int("AUTHSERVER_INTROSPECTION_CACHE_SECONDS", default=60 if REDIS_URL else 0)
)

# Client authentication. KP-AC: clients should not use secrets, so a deployment opts in.
AUTHSERVER_CLIENT_SECRETS_ENABLED = env.bool("AUTHSERVER_CLIENT_SECRETS_ENABLED", default=not IS_PRODUCTION)
AUTHSERVER_CLIENT_SECRET_LIFETIME_DAYS = env.int("AUTHSERVER_CLIENT_SECRET_LIFETIME_DAYS", default=365)
# Maximum lifetime of a private_key_jwt assertion (RFC 7523 §3: exp, with a short window).
AUTHSERVER_CLIENT_ASSERTION_MAX_LIFETIME = env.int("AUTHSERVER_CLIENT_ASSERTION_MAX_LIFETIME", default=300)
AUTHSERVER_CLOCK_SKEW_SECONDS = env.int("AUTHSERVER_CLOCK_SKEW_SECONDS", default=30)
# Fetching a client's jwks_uri (clients/jwks_uri.py): SSRF protection, limits and cache bounds.
# ALLOW_PRIVATE lets loopback and private addresses through (never link-local or multicast).
AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = env.bool("AUTHSERVER_JWKS_URI_ALLOW_PRIVATE", default=False)
AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS = env.float("AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS", default=3.0)
AUTHSERVER_JWKS_URI_MAX_BYTES = env.int("AUTHSERVER_JWKS_URI_MAX_BYTES", default=65536)
# A PEM file of CAs to trust for jwks_uri hosts; empty: the system store.
AUTHSERVER_JWKS_URI_CA_BUNDLE = env.str("AUTHSERVER_JWKS_URI_CA_BUNDLE", default="")
AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS = env.int("AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS", default=60)
AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS = env.int("AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS", default=86400)

# Client registration (layer 2, clients/policy.py, docs/decisions/0008-registration-modes.md).
# Open mode: unreviewed RFC 7591 registration of authorization-code clients with low-risk
# scopes only. Off in production unless a deployment opts in.
AUTHSERVER_OPEN_REGISTRATION_ENABLED = env.bool("AUTHSERVER_OPEN_REGISTRATION_ENABLED", default=not IS_PRODUCTION)
# Credentials of open clients live this long; open clients unused this long expire.
AUTHSERVER_OPEN_CREDENTIAL_LIFETIME_DAYS = env.int("AUTHSERVER_OPEN_CREDENTIAL_LIFETIME_DAYS", default=30)
AUTHSERVER_OPEN_CLIENT_UNUSED_DAYS = env.int("AUTHSERVER_OPEN_CLIENT_UNUSED_DAYS", default=30)
# During a rotation the old credential keeps working this long beside the new one.
AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS = env.int(
    "AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS", default=7 * 24 * 3600
)
# Days before a credential expires on which its owners get an email.
AUTHSERVER_CREDENTIAL_EXPIRY_REMINDER_DAYS = sorted(
    (int(day) for day in env.list("AUTHSERVER_CREDENTIAL_EXPIRY_REMINDER_DAYS", default=["30", "7", "1"])),
    reverse=True,
)
AUTHSERVER_INITIAL_ACCESS_TOKEN_LIFETIME_DAYS = env.int("AUTHSERVER_INITIAL_ACCESS_TOKEN_LIFETIME_DAYS", default=30)
# RFC 7591 software statements: trusted issuers, as a JSON object issuer -> JWKS, either the
# path of a JWKS file or the JWKS inline: {"https://fed.example.nl": "/etc/authserver/fed.jwks"}.
# A statement from any other issuer is refused (unapproved_software_statement).
AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS = env.json("AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS", default={})
# Anonymous (open mode) RFC 7591 registrations per caller IP address, in the notation of the
# limits library ("20/hour", "5/minute;50/day"); empty: no limit (authserver/ratelimit.py).
AUTHSERVER_REGISTRATION_RATE_LIMIT = env.str("AUTHSERVER_REGISTRATION_RATE_LIMIT", default="20/hour")

# Rate limits (authserver/ratelimit.py, docs/operations.md "Rate limits"), same notation. Per
# client, organisation and resource server these are the defaults a RateLimitTier overrides.
AUTHSERVER_RATE_LIMIT_TOKEN = env.str("AUTHSERVER_RATE_LIMIT_TOKEN", default="300/minute")
AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN = env.str("AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN", default="3000/minute")
AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP = env.str("AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP", default="1200/minute")
AUTHSERVER_RATE_LIMIT_INTROSPECTION = env.str("AUTHSERVER_RATE_LIMIT_INTROSPECTION", default="6000/minute")
AUTHSERVER_RATE_LIMIT_INTROSPECTION_PER_IP = env.str(
    "AUTHSERVER_RATE_LIMIT_INTROSPECTION_PER_IP", default="12000/minute"
)
AUTHSERVER_RATE_LIMIT_AUTHORIZE_PER_IP = env.str("AUTHSERVER_RATE_LIMIT_AUTHORIZE_PER_IP", default="300/minute")
AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP = env.str("AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP", default="60/minute;1000/hour")
AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME = env.str(
    "AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME", default="10/minute;50/hour"
)
# Where the counters live: empty means REDIS_URL, else this process's memory.
AUTHSERVER_RATE_LIMIT_STORAGE_URL = env.str("AUTHSERVER_RATE_LIMIT_STORAGE_URL", default="")
AUTHSERVER_RATE_LIMIT_KEY_PREFIX = env.str("AUTHSERVER_RATE_LIMIT_KEY_PREFIX", default="authserver-ratelimit")
# When the counter store is unreachable, per endpoint group (token, introspection, registration,
# authorize, login): "open" lets requests through, "closed" answers 503. Unnamed groups keep
# their default: token=closed, the others open. Example: token=closed,introspection=closed
AUTHSERVER_RATE_LIMIT_FAILURE_MODE = env.dict("AUTHSERVER_RATE_LIMIT_FAILURE_MODE", default={})

# Onboarding (layer 1): review cycle, lifecycle windows and evidence limits (onboarding/services.py).
ONBOARDING_REVIEW_INTERVAL_DAYS = env.int("ONBOARDING_REVIEW_INTERVAL_DAYS", default=365)
ONBOARDING_REVIEW_REMINDER_DAYS = env.int("ONBOARDING_REVIEW_REMINDER_DAYS", default=30)
# After next_review_at passes, an organisation stays active this long before it is suspended.
ONBOARDING_REVIEW_GRACE_DAYS = env.int("ONBOARDING_REVIEW_GRACE_DAYS", default=30)
ONBOARDING_DRAFT_EXPIRY_DAYS = env.int("ONBOARDING_DRAFT_EXPIRY_DAYS", default=90)
ONBOARDING_INVITATION_DAYS = env.int("ONBOARDING_INVITATION_DAYS", default=7)
ONBOARDING_CERT_WARNING_DAYS = env.int("ONBOARDING_CERT_WARNING_DAYS", default=30)
ONBOARDING_MAX_UPLOAD_BYTES = env.int("ONBOARDING_MAX_UPLOAD_BYTES", default=5 * 1024 * 1024)
# PEM bundle (or directory of PEM files) of the roots evidence certificates must chain to,
# e.g. the PKIoverheid roots; unset means no chain check (reported as such to the reviewer).
ONBOARDING_TRUST_STORE = env.str("ONBOARDING_TRUST_STORE", default="") or None

OAUTH2_PROVIDER_APPLICATION_MODEL = "clients.Client"
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": AUTHSERVER_ISSUER,
    # RFC 8707 at our own protected endpoints: userinfo accepts API-audienced tokens with openid.
    "RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR": "authserver.oauth.validator.token_audience_allows",
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": True,
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    "OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS": False,
    "OAUTH2_SERVER_CLASS": "authserver.oauth.server.Server",
    "OIDC_SERVER_CLASS": "authserver.oauth.server.Server",
    "OAUTH2_VALIDATOR_CLASS": "authserver.oauth.validator.Validator",
    "SCOPES_BACKEND_CLASS": "authserver.oauth.scopes.ClientScopes",
    "APPLICATION_ADMIN_CLASS": "clients.admin.ClientAdmin",
    "SCOPES": {
        "openid": "Sign you in and share your identifier",
        "profile": "Share your name",
        "email": "Share your email address",
        # The representatives' REST API (/api/v1/): act for you on your organisations' onboarding and clients.
        "portal": "Manage your organisations' onboarding and clients on your behalf",
    },
    "DEFAULT_SCOPES": [],
    "ACCESS_TOKEN_EXPIRE_SECONDS": AUTHSERVER_ACCESS_TOKEN_LIFETIME,
    "ID_TOKEN_EXPIRE_SECONDS": AUTHSERVER_ID_TOKEN_LIFETIME,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": AUTHSERVER_AUTHORIZATION_CODE_LIFETIME,
    # DOT counts refresh expiry from the paired access token's expiry; the idle limit is
    # measured from issue, so subtract the access token lifetime.
    "REFRESH_TOKEN_EXPIRE_SECONDS": max(AUTHSERVER_REFRESH_TOKEN_IDLE_LIFETIME - AUTHSERVER_ACCESS_TOKEN_LIFETIME, 0),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    "ALLOW_URI_WILDCARDS": False,
    "REQUEST_APPROVAL_PROMPT": "force",
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "ACCESS_TOKEN_GENERATOR": "authserver.oauth.tokens.generate_access_token",
    "REFRESH_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
    "EXTRA_SERVER_KWARGS": {},
    # RFC 7591/7592 at /oauth/register (clients/dcr.py builds on DOT's views): anonymous
    # callers only in open mode, everyone else with an initial access token; the policy decides.
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("clients.dcr.InitialAccessTokenOrOpenRegistration",),
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE": 1000,
    "CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL": 0,
}

# The REST APIs share one kernel (authserver/api): a person's bearer token (never in the query
# string) or a session with CSRF; every view declares required_scopes; JSON bodies only (a
# view widens that, as the evidence upload does for multipart); RFC 9457 problem details.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "authserver.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["authserver.api.permissions.PersonWithScope"],
    "DEFAULT_PARSER_CLASSES": ["authserver.api.parsers.JSONParser"],
    "DEFAULT_METADATA_CLASS": "authserver.api.metadata.ApiMetadata",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "authserver.api.problems.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "authserver.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "authserver.api.schema.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "authserver API",
    "DESCRIPTION": "The operations of organisation representatives: organisations, members, invitations, "
    "KYC applications with their evidence, and OAuth clients with their credentials. Errors are RFC 9457 "
    "problem details.",
    "VERSION": "1.0.0",  # authserver.api.views.API_VERSION, sent as the API-Version header
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}},
    "ENUM_NAME_OVERRIDES": {
        "OrganisationKindEnum": "onboarding.models.Organisation.Kind",
        "OrganisationStatusEnum": "onboarding.models.Organisation.Status",
        "TrustLevelEnum": "onboarding.models.Organisation.TrustLevel",
        "MembershipRoleEnum": "onboarding.models.Membership.Role",
        "ApplicationStatusEnum": "onboarding.models.KycApplication.Status",
        "EvidenceKindEnum": "onboarding.models.Evidence.Kind",
        "ClientStatusEnum": "clients.models.Client.Status",
        "CredentialStatusEnum": "clients.models.ClientCredential.Status",
        "CredentialKindEnum": "clients.models.ClientCredential.Kind",
        "IntakeStatusEnum": "clients.models.ClientIntake.Status",
    },
    "OAUTH2_SCOPES": {"portal": "Manage your organisations' onboarding and clients on your behalf"},
}

# Celery. Without REDIS_URL, kombu's filesystem transport needs no broker server; beat
# still runs the periodic jobs. With REDIS_URL, Redis is the broker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "celery" / "queue"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(DATA_DIR / "celery" / "processed"),
        "control_folder": str(DATA_DIR / "celery" / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Keep Django's LOGGING (request ids, the secret-redacting filter) in worker processes too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Where tasks go unless routed; the worker tests give each worker a queue of its own, so the
# tasks a job enqueues (emails) reach that worker too.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celery" / "beat-schedule")
CELERY_BEAT_SCHEDULE = {
    "clear-expired-tokens": {
        "task": "authserver.tasks.clear_expired_tokens_task",
        "schedule": crontab(minute="*/15"),
    },
    "rotate-signing-keys": {
        "task": "authserver.tasks.rotate_signing_keys_task",
        "schedule": crontab(minute=7),
    },
    # Onboarding lifecycle (bounded and idempotent; onboarding/tasks.py).
    "onboarding-expire-stale-applications": {
        "task": "onboarding.tasks.kyc_applications_expire_stale_task",
        "schedule": crontab(hour=2, minute=10),
    },
    "onboarding-remind-reviews": {
        "task": "onboarding.tasks.organisations_remind_review_task",
        "schedule": crontab(hour=8, minute=0),
    },
    "onboarding-suspend-lapsed-organisations": {
        "task": "onboarding.tasks.organisations_suspend_lapsed_task",
        "schedule": crontab(hour=2, minute=20),
    },
    "onboarding-end-expired-memberships": {
        "task": "onboarding.tasks.memberships_end_expired_task",
        "schedule": crontab(minute=25),
    },
    "onboarding-expire-invitations": {
        "task": "onboarding.tasks.invitations_expire_task",
        "schedule": crontab(minute=35),
    },
    "onboarding-warn-expiring-certificates": {
        "task": "onboarding.tasks.evidence_warn_expiring_task",
        "schedule": crontab(hour=8, minute=15),
    },
    # Client credential lifecycle (bounded and idempotent; clients/services/credentials.py).
    # The validator checks expires_at itself, so expiry here only records what already holds.
    "clients-expire-credentials": {
        "task": "clients.tasks.credentials_expire_due_task",
        "schedule": crontab(minute="*/15"),
    },
    "clients-remind-expiring-credentials": {
        "task": "clients.tasks.credentials_remind_expiring_task",
        "schedule": crontab(hour=8, minute=30),
    },
    "clients-expire-unused-open-clients": {
        "task": "clients.tasks.clients_expire_unused_open_task",
        "schedule": crontab(hour=2, minute=40),
    },
    "clients-expire-initial-access-tokens": {
        "task": "clients.tasks.initial_access_tokens_expire_task",
        "schedule": crontab(hour=2, minute=50),
    },
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# plain (one readable line) or json (one JSON object a line, for log shippers).
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if IS_PRODUCTION else "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_context": {"()": "authserver.logging.RequestContextFilter"},
        "redact": {"()": "authserver.logging.RedactSecretsFilter"},
    },
    "formatters": {
        # Redacting: the filter sees only the message, not a traceback's text (docs/security.md).
        "plain": {
            "()": "authserver.logging.RedactingFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {"()": "authserver.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "oauthlib": {"level": env.str("OAUTHLIB_LOG_LEVEL", default="INFO")},
    },
}
