"""The one place where the protocol bends (STYLE.md §3).

django-oauth-toolkit runs the protocol; this subclass decides. Every override names the
RFC or profile clause it serves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import jwt as pyjwt
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from authserver import hotcache, mtls, ratelimit
from authserver.network import client_address
from authserver.policy import INVALID_SCOPE, INVALID_TARGET, IssuanceDecision, zone_binding_refusal
from clients import jwks_uri as client_jwks_uri
from clients.models import Client, ClientCredential

from . import claims as oidc_claims
from . import issuance
from .client_auth import ASSERTION_TYPE, ClientAuthError, hash_client_secret, peek_assertion, verify_assertion
from .keys import keyring
from .persist import fast_insert

log = logging.getLogger(__name__)

AccessToken = get_access_token_model()
Grant = get_grant_model()
RefreshToken = get_refresh_token_model()

# RFC 7636 §4.1: code_verifier = 43*128unreserved.
CODE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
# RFC 7636 §4.2: S256 challenge = BASE64URL(SHA256(verifier)), 43 characters.
S256_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")

GRANTS_FOR_CLIENT = {
    Client.GRANT_AUTHORIZATION_CODE: {"authorization_code", "refresh_token"},
    Client.GRANT_CLIENT_CREDENTIALS: {"client_credentials"},
}
OIDC_SCOPES = {"openid", "profile", "email"}
USED_CODE_TTL = 24 * 3600


def token_audience_allows(request_uri: str, audiences: list[str]) -> bool:
    """DOT's RFC 8707 check for tokens presented to this server's own protected endpoints.

    A token for an API (``aud`` = its audience) that also carries ``openid`` must still work at
    userinfo (OIDC Core §5.3): userinfo demands the ``openid`` scope itself, so its path is
    allowed for every audience. Anything else keeps DOT's URL-prefix rule.
    """
    from urllib.parse import urlsplit

    from django.urls import reverse
    from oauth2_provider.oauth2_validators import validate_resource_as_url_prefix

    if urlsplit(request_uri).path == reverse("oauth2_provider:user-info"):
        return True
    return bool(validate_resource_as_url_prefix(request_uri, audiences))


def _code_acr_key(code: str) -> str:
    return "authorization-code-acr:" + hashlib.sha256(code.encode()).hexdigest()


def _cache_quietly(operation: Any, *args: Any, **kwargs: Any) -> Any:
    """A cache call on the authorization-code path, where the cache only helps: without it the
    ID token says eIDAS low (the weakest claim, never a stronger one than the sign-in had) and a
    replayed code is still refused (the grant row is gone) but cannot revoke what it issued."""
    try:
        return operation(*args, **kwargs)
    except Exception:
        log.warning("cache unavailable on the authorization-code path", exc_info=True)
        return None


def _used_code_key(code: str) -> str:
    return "used-authorization-code:" + hashlib.sha256(code.encode()).hexdigest()


def certificate_binding(token: str) -> str | None:
    """The ``cnf`` ``x5t#S256`` of one of our access tokens, or None when it is not bound.

    Call it with a token found by its checksum only: that it is ours and intact is settled.
    """
    try:
        claims = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError:
        return None
    confirmation = claims.get("cnf")
    if not isinstance(confirmation, dict):
        return None
    bound = confirmation.get("x5t#S256")
    return bound if isinstance(bound, str) else None


class Validator(OAuth2Validator):
    # ---- clients -------------------------------------------------------------------

    def _load_application(self, client_id: Any, request: Any) -> Client | None:
        """Load an active client of an active organisation, once per request."""
        if not isinstance(client_id, str) or not client_id or "\x00" in client_id or len(client_id) > 255:
            return None
        client = request.client
        if isinstance(client, Client) and client.client_id == client_id:
            return client if client.is_usable(request) else None
        client = hotcache.local(
            "client",
            client_id,
            lambda: Client.objects.select_related("organisation").filter(client_id=client_id).first(),
            keep=lambda found: found is not None,  # any string can be asked for: misses are not kept
        )
        if client is None or not client.is_usable(request):
            request.client = None
            return None
        request.client = client
        return client

    def _presented_methods(self, request: Any) -> list[str]:
        methods: list[str] = []
        if self._extract_basic_auth(request):
            methods.append(Client.AuthMethod.CLIENT_SECRET_BASIC)
        if getattr(request, "client_secret", None):
            methods.append(Client.AuthMethod.CLIENT_SECRET_POST)
        if getattr(request, "client_assertion", None) or getattr(request, "client_assertion_type", None):
            methods.append(Client.AuthMethod.PRIVATE_KEY_JWT)
        if not methods and request.client_id:
            # RFC 8705 §2: a mutual-TLS client sends its client_id and nothing else; the
            # certificate of the TLS connection is the credential.
            client = self._load_application(request.client_id, request)
            if client is not None and client.uses_mtls:
                methods.append(client.token_endpoint_auth_method)
        return methods

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        """Public clients (auth method ``none``) identify with client_id; all others authenticate."""
        if self._presented_methods(request):
            return True
        client = self._load_application(request.client_id, request)
        return client is None or not client.is_public

    def authenticate_client_id(self, client_id: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        client = self._load_application(client_id, request)
        if client is None or not client.is_public:
            return False
        self._check_network_zones(client, request)
        return True

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        """RFC 6749 §2.3 and RFC 7523 §2.2: exactly one method, the one the client registered."""
        methods = self._presented_methods(request)
        if len(methods) > 1:
            raise errors.InvalidRequestError(
                description="Use exactly one client authentication method (RFC 6749 §2.3).", request=request
            )
        if not methods:
            raise errors.InvalidClientError(description="Client authentication is required.", request=request)
        method = methods[0]
        try:
            if method == Client.AuthMethod.PRIVATE_KEY_JWT:
                client = self._authenticate_assertion(request)
            elif method in Client.MTLS_METHODS:
                client = self._authenticate_certificate(request, method)
            else:
                client = self._authenticate_secret(request, method)
        except ClientAuthError as exc:
            raise errors.InvalidClientError(description=str(exc), request=request) from None
        request.client = client
        request.client_id = client.client_id
        request.authenticated_with = method
        self._check_network_zones(client, request)
        return True

    def _client_for_method(self, client_id: Any, method: str, request: Any) -> Client:
        request.client = None
        client = self._load_application(client_id, request)
        if client is None:
            raise ClientAuthError("Unknown, inactive or suspended client.")
        if client.token_endpoint_auth_method != method:
            raise ClientAuthError(f"This client is registered for {client.token_endpoint_auth_method}, not {method}.")
        return client

    def _authenticate_secret(self, request: Any, method: str) -> Client:
        if not settings.AUTHSERVER_CLIENT_SECRETS_ENABLED:
            raise ClientAuthError("Client secrets are not accepted by this server; use private_key_jwt.")
        if method == Client.AuthMethod.CLIENT_SECRET_BASIC:
            client_id, secret = self._decode_basic_auth(request)
            if request.client_id and request.client_id != client_id:
                raise errors.InvalidRequestError(
                    description="client_id in the body differs from the authenticated client.", request=request
                )
        else:
            client_id, secret = request.client_id, request.client_secret
        client = self._client_for_method(client_id, method, request)
        if not isinstance(secret, str) or not secret:
            raise ClientAuthError("The client secret is missing.")
        presented = hash_client_secret(secret)
        # Every usable secret is compared (constant time each): during a rotation's overlap
        # the old and the new one both work.
        matched = [
            credential
            for credential in self._usable_credentials(client, (ClientCredential.Kind.SECRET,))
            if hmac.compare_digest(credential.secret_hash, presented)
        ]
        if not matched:
            raise ClientAuthError("The client secret is wrong, expired or revoked.")
        self._touch(matched[0])
        return client

    @staticmethod
    def _usable_credentials(client: Client, kinds: tuple[str, ...]) -> list[ClientCredential]:
        """The client's credentials of ``kinds`` that work now: read once per process and
        generation (authserver/hotcache.py; any change to a credential replaces it), then
        checked against the clock here, so an expiry counts to the second."""
        credentials: list[ClientCredential] = hotcache.local(
            "credentials",
            str(client.pk),
            lambda: list(
                ClientCredential.objects.filter(client=client.pk, status__in=ClientCredential.USABLE_STATUSES)
            ),
        )
        now = timezone.now()
        return [credential for credential in credentials if credential.kind in kinds and credential.is_usable(now)]

    def _authenticate_certificate(self, request: Any, method: str) -> Client:
        """RFC 8705 §2.1 (tls_client_auth) and §2.2 (self_signed_tls_client_auth)."""
        client = self._client_for_method(request.client_id, method, request)
        certificate, chain_verified = mtls.from_oauthlib(request)
        if certificate is None:
            raise ClientAuthError("This client authenticates with a TLS client certificate; none was presented.")
        presented = mtls.thumbprint(certificate)
        credentials = self._usable_credentials(client, (ClientCredential.Kind.CERTIFICATE,))
        if method == Client.AuthMethod.TLS_CLIENT_AUTH:
            # PKI: the proxy chained the certificate to its trust store; the registered DN or
            # certificate says which of those certificates is this client's.
            if not chain_verified:
                raise ClientAuthError("The client certificate does not chain to a trusted issuer.")
            dn = mtls.subject_dn(certificate)
            matched = [c for c in credentials if (c.subject_dn and c.subject_dn == dn) or c.thumbprint == presented]
        else:
            # Self-signed: the TLS handshake proved the key; the thumbprint must be registered.
            matched = [c for c in credentials if c.thumbprint and c.thumbprint == presented]
        if not matched:
            raise ClientAuthError("The client certificate is not the one registered for this client.")
        self._touch(matched[0])
        request.client_certificate_thumbprint = presented
        return client

    def _decode_basic_auth(self, request: Any) -> tuple[str, str]:
        auth_string = self._extract_basic_auth(request)
        try:
            decoded = base64.b64decode(auth_string, validate=True).decode("utf-8")
            client_id, secret = decoded.split(":", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
            raise ClientAuthError("The Basic authorization header is malformed.") from None
        # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        return unquote_plus(client_id), unquote_plus(secret)

    def _authenticate_assertion(self, request: Any) -> Client:
        if getattr(request, "client_assertion_type", None) != ASSERTION_TYPE:
            raise ClientAuthError(f"client_assertion_type must be {ASSERTION_TYPE}.")
        assertion = getattr(request, "client_assertion", None)
        if not isinstance(assertion, str) or not assertion:
            raise ClientAuthError("client_assertion is missing.")
        peeked = peek_assertion(assertion)
        if request.client_id and request.client_id != peeked.client_id:
            raise ClientAuthError("client_id differs from the client_assertion issuer.")
        client = self._client_for_method(peeked.client_id, Client.AuthMethod.PRIVATE_KEY_JWT, request)
        credentials = self._usable_credentials(
            client, (ClientCredential.Kind.PUBLIC_KEY, ClientCredential.Kind.JWKS_URI)
        )
        # Each key beside the credential it came from: registered JWKs, and (RFC 7591 §2) the
        # keys served at a jwks_uri, read from the cache (one GET); a kid found nowhere may
        # refetch, at most once per AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS (key rollover).
        keyed = [
            (credential, credential.public_jwk)
            for credential in credentials
            if credential.kind == ClientCredential.Kind.PUBLIC_KEY and credential.public_jwk
        ]
        if peeked.kid is None or all(jwk.get("kid") != peeked.kid for _, jwk in keyed):
            for credential in credentials:
                if credential.kind == ClientCredential.Kind.JWKS_URI:
                    served = client_jwks_uri.signing_keys(credential.jwks_uri, kid=peeked.kid)
                    keyed.extend((credential, jwk) for jwk in served)
        verify_assertion(
            assertion,
            peeked=peeked,
            jwks=[jwk for _, jwk in keyed],
            audiences=self._assertion_audiences(request),
        )
        used = [credential for credential, jwk in keyed if peeked.kid is None or jwk.get("kid") == peeked.kid]
        for credential in used[:1]:
            self._touch(credential)
        return client

    @staticmethod
    def _assertion_audiences(request: Any) -> list[str]:
        """RFC 7523 §3: aud identifies this server: its token endpoint (OAUTH-NL) or issuer."""
        issuer = settings.AUTHSERVER_ISSUER
        audiences = [f"{issuer}/oauth/token", issuer]
        backchannel = settings.AUTHSERVER_BACKCHANNEL_URL
        if backchannel and backchannel != issuer:
            # The token endpoint discovery advertises on the back channel (deploy/nginx/).
            audiences.insert(0, f"{backchannel}/oauth/token")
        return audiences

    @staticmethod
    def _touch(credential: ClientCredential) -> None:
        # Last use at hour precision: one UPDATE an hour per credential, not one per token.
        now = timezone.now()
        if credential.last_used_at is None or credential.last_used_at < now - timedelta(hours=1):
            ClientCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
            credential.last_used_at = now  # the process's copy too: one UPDATE an hour, not one per token

    @staticmethod
    def _touch_client(client: Client) -> None:
        """Client.last_used_at at hour precision (unused open clients expire by it): at most one
        UPDATE an hour per client, public clients included.

        Run after the token transaction commits: inside it, this row lock would follow the
        credential's (``_touch``), the reverse of client_credential_rotate's order (client, then
        credentials), and the two could deadlock.
        """
        now = timezone.now()
        stale = now - timedelta(hours=1)
        if client.last_used_at is not None and client.last_used_at >= stale:
            return
        client.last_used_at = now
        transaction.on_commit(
            lambda: Client.objects.filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=client.pk
            ).update(last_used_at=now),
            robust=True,
        )

    # ---- issuance policy and network zones (docs/decisions/0009) -----------------------

    @staticmethod
    def _catalogue(request: Any) -> issuance.Snapshot:
        """The catalogue facts this request reads, cached (issuance.py); one per request."""
        snapshot = getattr(request, "_authserver_catalogue", None)
        if snapshot is None:
            snapshot = issuance.Snapshot()
            request._authserver_catalogue = snapshot
        return snapshot

    def _zone_refusal(self, client: Client, request: Any) -> str | None:
        """Why a client bound to network zones may not be served from this address, or None."""
        catalogue = self._catalogue(request)
        bound = catalogue.bound_zones(client.pk)
        if not bound:
            return None
        address = client_address(request)
        caller = catalogue.caller_zones(address, client.environment)
        reason = zone_binding_refusal(address, bound, caller, client.environment)
        if reason:
            log.info("client %s refused outside its network zones", client.client_id)
        return reason

    def _check_network_zones(self, client: Client, request: Any) -> None:
        """A client bound to zones authenticates only from an address in one of them (RFC 6749 §5.2)."""
        reason = self._zone_refusal(client, request)
        if reason:
            raise errors.InvalidClientError(description=reason, request=request)

    @staticmethod
    def _at_authorization_endpoint(request: Any) -> bool:
        return not request.grant_type and bool(request.response_type)

    def _requested_resources(self, request: Any) -> list[str]:
        """RFC 8707 resource indicators: DOT's normalisation at the token endpoint (with the
        grant's or refresh token's resources); at the authorization endpoint every repeated
        ``resource`` of the query (GET), or the list DOT took from the consent form (POST)."""
        if not self._at_authorization_endpoint(request):
            self._check_and_set_request_resource(request)
            return list(request.resource or [])
        resource = getattr(request, "resource", None)
        if isinstance(resource, list):
            return [value for value in resource if isinstance(value, str)]
        if request.http_method == "GET":
            query = parse_qsl(request.uri_query or "", keep_blank_values=True)
            return [value for key, value in query if key == "resource"]
        return [resource] if isinstance(resource, str) and resource.strip() else []

    def _issuance(self, request: Any, scopes: list[str]) -> IssuanceDecision:
        """Decide with the policy (authserver/policy.py) or raise its refusal.

        Facts are the client's grant and environment, its organisation as it is now, the
        caller's network zones and the catalogue rules, read once per request. The decision is
        kept on the request: the token generator reads its audience, format and lifetime.
        """
        resources = self._requested_resources(request)
        memo = getattr(request, "_authserver_issuance", None)
        if memo is not None and memo[0] == (tuple(scopes), tuple(resources)):
            decision: IssuanceDecision = memo[1]
            return decision
        from .tokens import default_access_token_lifetime

        decision = issuance.decide(
            client=request.client,
            scopes=scopes,
            resources=resources,
            address=client_address(request),
            default_lifetime=default_access_token_lifetime(request),
            snapshot=self._catalogue(request),
        )
        if decision.error == INVALID_SCOPE:
            raise errors.InvalidScopeError(description=decision.description, request=request)
        if decision.error == INVALID_TARGET:
            raise errors.CustomOAuth2Error(error=INVALID_TARGET, description=decision.description, request=request)
        if decision.refused:
            raise errors.InvalidClientError(description=decision.description, request=request)
        request._authserver_issuance = ((tuple(scopes), tuple(resources)), decision)
        return decision

    def issuance_for_token(self, request: Any) -> IssuanceDecision:
        """The decision for the token being minted, for every grant (refresh included: the
        organisation may have changed since the first token); sets the token's resources
        (RFC 8707, its ``aud``) to the APIs the decision chose."""
        decision: IssuanceDecision | None = getattr(request, "_authserver_token_issuance", None)
        if decision is None:
            decision = self._issuance(request, list(request.scopes or []))
            request.resource = list(decision.audiences)
            request._authserver_token_issuance = decision
        return decision

    # ---- grants, response types, scopes, redirects ------------------------------------

    def validate_grant_type(
        self, client_id: Any, grant_type: str, client: Client, request: Any, *a: Any, **k: Any
    ) -> bool:
        """OAUTH-NL §3.1.1: one grant type per client (refresh belongs to authorization code).

        oauthlib calls this on every grant right after client authentication, so it is where the
        client's and its organisation's token budgets are spent (authserver/ratelimit.py; 429).
        """
        if grant_type not in GRANTS_FOR_CLIENT.get(client.authorization_grant_type, set()):
            return False
        ratelimit.enforce_token_budget(client, request)
        return True

    def validate_response_type(
        self, client_id: Any, response_type: str, client: Client, request: Any, *a: Any, **k: Any
    ) -> bool:
        """RFC 9700 §2.1.2: only the code flow; no implicit or hybrid response types.

        RFC 6749 §4.1.2.1: a response type the server does not support at all is
        ``unsupported_response_type``; a client of the other grant is ``unauthorized_client``.
        """
        if response_type != "code":
            raise errors.UnsupportedResponseTypeError(
                description="Only response_type=code is supported (no implicit or hybrid flows).", request=request
            )
        if client.authorization_grant_type != Client.GRANT_AUTHORIZATION_CODE:
            raise errors.UnauthorizedClientError(
                description="This client is registered for client_credentials, not the authorization code flow.",
                request=request,
            )
        return True

    def validate_scopes(
        self, client_id: Any, scopes: list[str], client: Client, request: Any, *a: Any, **k: Any
    ) -> bool:
        """The issuance policy (docs/decisions/0009): every requested scope passes, or the
        request fails with ``invalid_scope`` naming each refused scope and the rule (RFC 6749
        §5.2; nothing is silently narrowed); resources are ``invalid_target`` (RFC 8707 §2).

        At the authorization endpoint the caller is the user agent: a client bound to network
        zones is refused (``access_denied``) outside them, and the policy runs there too, so
        the consent screen shows only what can be granted. The token endpoint decides again.
        """
        if self._at_authorization_endpoint(request):
            reason = self._zone_refusal(client, request)
            if reason:
                raise errors.AccessDeniedError(description=reason, request=request)
        self._issuance(request, list(scopes))
        return True

    def get_default_scopes(self, client_id: Any, request: Any, *args: Any, **kwargs: Any) -> list[str]:
        """RFC 6749 §3.3: without a scope parameter the client gets its granted scopes; with a
        resource indicator (RFC 8707 §2), only those of the requested APIs and those of no API."""
        client = request.client
        scopes = client.scopes if client else []
        if client and client.authorization_grant_type == Client.GRANT_CLIENT_CREDENTIALS:
            scopes = [scope for scope in scopes if scope not in OIDC_SCOPES]
        if client and scopes:
            resources = self._requested_resources(request)
            if resources:
                rules, _apis = self._catalogue(request).rules_and_apis(scopes, ())
                scopes = [
                    scope
                    for scope in scopes
                    if (rule := rules.get(scope)) is None or rule.api is None or rule.api.audience in resources
                ]
        return scopes

    def validate_redirect_uri(self, client_id: Any, redirect_uri: str, request: Any, *args: Any, **kwargs: Any) -> bool:
        """OAUTH-NL / RFC 9700 §4.1.3: exact string match against a registered URI."""
        return redirect_uri in request.client.redirect_uris.split()

    def get_default_redirect_uri(self, client_id: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        """OAUTH-NL: redirect_uri is required in every authorization request; no default."""
        return None

    def is_pkce_required(self, client_id: Any, request: Any) -> bool:
        """OAUTH-NL, RFC 9700 §2.1.1: PKCE on every authorization request."""
        return True

    # ---- authorization codes ---------------------------------------------------------

    def _grant(self, code: Any, request: Any) -> Any:
        cached = getattr(request, "_authserver_grant", None)
        if cached is not None and cached.code == code:
            return cached
        if not isinstance(code, str) or "\x00" in code:
            return None
        grants = Grant.objects.filter(code=code, application=request.client)
        if transaction.get_connection().in_atomic_block:
            # The token endpoint runs in a transaction: a concurrent use of the same code waits
            # here until the first commits (and deleted the grant), then finds nothing.
            grants = grants.select_for_update()
        grant = grants.first()
        request._authserver_grant = grant
        return grant

    def validate_code(self, client_id: Any, code: Any, client: Client, request: Any, *args: Any, **kwargs: Any) -> bool:
        """A code works once, for the client it was issued to, before it expires.

        STANDARDS.md: a reused code revokes the tokens it issued (RFC 6749 §4.1.2).
        """
        grant = self._grant(code, request)
        if grant is None:
            if isinstance(code, str):
                self._revoke_tokens_of_reused_code(code)
            return False
        if grant.is_expired():
            return False
        if grant.user is not None and not grant.user.is_active:
            return False
        request.scopes = grant.scope.split()
        request.user = grant.user
        if grant.nonce:
            request.nonce = grant.nonce
        if grant.claims:
            request.claims = json.loads(grant.claims)
        request.acr = _cache_quietly(cache.get, _code_acr_key(code)) or oidc_claims.ACR_LOW
        # The policy again at the token endpoint: the organisation may have changed since consent.
        self._issuance(request, request.scopes)
        return True

    def save_authorization_code(
        self, client_id: Any, code: dict[str, Any], request: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Remember how strongly the user signed in when consenting: the ID token's acr
        (OIDC-NL, eIDAS levels) describes that sign-in, not the user's state at the token call."""
        super().save_authorization_code(client_id, code, request, *args, **kwargs)
        acr = oidc_claims.acr_for(request.user)
        timeout = settings.AUTHSERVER_AUTHORIZATION_CODE_LIFETIME + 60
        _cache_quietly(cache.set, _code_acr_key(code["code"]), acr, timeout=timeout)

    def _revoke_tokens_of_reused_code(self, code: str) -> None:
        issued = _cache_quietly(cache.get, _used_code_key(code))
        if not isinstance(issued, dict):
            return
        from oauth2_provider.models import revoke_access_token

        log.warning("authorization code replayed; revoking the tokens it issued")
        token = AccessToken.objects.filter(pk=issued.get("access_token")).first()
        if token is not None:
            revoke_access_token(token)
        if issued.get("family"):
            RefreshToken.revoke_family(uuid.UUID(issued["family"]))

    def confirm_redirect_uri(
        self, client_id: Any, code: Any, redirect_uri: Any, client: Client, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        """RFC 6749 §4.1.3: the same redirect_uri as in the authorization request."""
        grant = self._grant(code, request)
        return grant is not None and redirect_uri == grant.redirect_uri

    def get_code_challenge(self, code: Any, request: Any) -> str | None:
        grant = self._grant(code, request)
        return (grant.code_challenge or None) if grant else None

    def get_code_challenge_method(self, code: Any, request: Any) -> str | None:
        grant = self._grant(code, request)
        return (grant.code_challenge_method or None) if grant else None

    def get_authorization_code_scopes(self, client_id: Any, code: Any, redirect_uri: Any, request: Any) -> list[str]:
        """oauthlib's token dispatcher calls this *before* client authentication, only to pick
        the OpenID Connect grant (which adds the id_token, OIDC Core §3.1.3.3). With no client
        yet, read the scopes by code alone and cache nothing: validate_code still binds the
        code to the authenticated client (RFC 6749 §4.1.3)."""
        if request.client is None:
            if not isinstance(code, str) or "\x00" in code:
                return []
            scope = Grant.objects.filter(code=code).values_list("scope", flat=True).first()
            return scope.split() if scope else []
        grant = self._grant(code, request)
        return grant.scope.split() if grant else []

    def get_authorization_code_nonce(self, client_id: Any, code: Any, redirect_uri: Any, request: Any) -> str | None:
        grant = self._grant(code, request)
        return (grant.nonce or None) if grant else None

    def invalidate_authorization_code(self, client_id: Any, code: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        """Single use: the grant row goes; a concurrent second use finds nothing (invalid_grant)."""
        deleted, _ = Grant.objects.filter(code=code, application=request.client).delete()
        if not deleted:
            raise errors.InvalidGrantError(request=request)

    # ---- tokens ----------------------------------------------------------------------

    def _check_and_set_request_resource(self, request: Any) -> None:
        # Called by the token generator (for ``aud``) and again by DOT when saving; once is enough.
        if getattr(request, "_authserver_resource_checked", False):
            return
        if request.grant_type == "authorization_code" and not hasattr(request, "_authserver_grant"):
            self._grant(request.code, request)
        super()._check_and_set_request_resource(request)
        request._authserver_resource_checked = True

    def save_bearer_token(self, token: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        """A client-credentials token is one row with no refresh token: its INSERT needs no
        transaction of its own (DOT opens one, a savepoint inside the request's). Others keep DOT's."""
        if request.grant_type == "client_credentials" and not token.get("refresh_token"):
            return self._save_bearer_token(token, request, *args, **kwargs)
        return super().save_bearer_token(token, request, *args, **kwargs)

    def _create_access_token(
        self, expires: Any, request: Any, token: dict[str, Any], source_refresh_token: Any = None
    ) -> Any:
        # The stored expiry is the signed ``exp`` (DOT computes its own a moment later), so
        # introspection (RFC 7662 §2.2) never calls a token active after its JWT expired.
        signed_exp = getattr(request, "access_token_exp", None)
        if signed_exp is not None:
            expires = datetime.fromtimestamp(signed_exp, tz=UTC)
        if request.grant_type == "client_credentials" and not token.get("id_token") and source_refresh_token is None:
            # The hot path: DOT's row, written with one precompiled INSERT (fast_insert).
            access_token = AccessToken(
                user=None,
                scope=token["scope"],
                expires=expires,
                application=request.client,
                resource=getattr(request, "resource", []),  # RFC 8707
            )
            self._set_token_value(access_token, token["access_token"])
            fast_insert(access_token)
        else:
            access_token = super()._create_access_token(expires, request, token, source_refresh_token)
        if isinstance(request.client, Client):
            self._touch_client(request.client)
        if request.grant_type == "authorization_code" and isinstance(request.code, str):
            _cache_quietly(
                cache.set, _used_code_key(request.code), {"access_token": access_token.pk}, timeout=USED_CODE_TTL
            )
        return access_token

    def _create_refresh_token(
        self, request: Any, refresh_token_code: Any, access_token: Any, previous_refresh_token: Any
    ) -> Any:
        refresh_token = super()._create_refresh_token(request, refresh_token_code, access_token, previous_refresh_token)
        if request.grant_type == "authorization_code" and isinstance(request.code, str):
            # A replayed code must revoke the whole refresh family, which outlives the first
            # access token once it has been refreshed (RFC 6749 §4.1.2, RFC 9700 §4.14).
            issued = {"access_token": access_token.pk, "family": str(refresh_token.token_family)}
            _cache_quietly(cache.set, _used_code_key(request.code), issued, timeout=USED_CODE_TTL)
        return refresh_token

    def rotate_refresh_token(self, request: Any) -> bool:
        """OAUTH-NL / RFC 9700 §4.14.2: refresh tokens are one-time use."""
        return True

    def validate_refresh_token(
        self, refresh_token: Any, client: Client, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        """Rotation with reuse detection (DOT), plus the absolute lifetime of the family."""
        if not isinstance(refresh_token, str) or "\x00" in refresh_token:
            return False
        if transaction.get_connection().in_atomic_block:
            # The token endpoint runs in a transaction: a concurrent use of the same refresh
            # token waits here until the first commits its rotation, then reads it as revoked
            # (a reuse: invalid_grant, family revoked). Unlocked, both passed validation and the
            # second was answered 200 with DOT's grace-period re-issue (an empty refresh token).
            checksum = hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()
            list(RefreshToken.objects.select_for_update().filter(token_checksum=checksum).values_list("pk"))
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        if request.user is not None and not request.user.is_active:
            return False
        instance = request.refresh_token_instance
        if instance.token_family:
            started = RefreshToken.objects.filter(token_family=instance.token_family).aggregate(Min("created"))
            first = started["created__min"] or instance.created
        else:
            first = instance.created
        absolute = timedelta(seconds=settings.AUTHSERVER_REFRESH_TOKEN_ABSOLUTE_LIFETIME)
        return first + absolute > timezone.now()

    def validate_bearer_token(self, token: Any, scopes: Any, request: Any) -> bool:
        if not isinstance(token, str) or "\x00" in token:
            return False
        if not super().validate_bearer_token(token, scopes, request):
            return False
        if request.user is not None and not request.user.is_active:
            return False  # a deactivated account's tokens stop working at once
        # RFC 8705 §3: a certificate-bound token works only over a connection with that certificate.
        bound = certificate_binding(token)
        if bound is not None:
            certificate, _verified = mtls.from_oauthlib(request)
            if certificate is None or mtls.thumbprint(certificate) != bound:
                log.info("certificate-bound access token presented without its certificate")
                return False
        return True

    def _load_access_token(self, token: str) -> Any:
        checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
        return (
            AccessToken.objects.select_related("application__organisation", "user")
            .filter(token_checksum=checksum)
            .first()
        )

    def revoke_token(self, token: Any, token_type_hint: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(token, str) or "\x00" in token:
            return
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)

    # ---- OpenID Connect --------------------------------------------------------------

    def get_claim_dict(self, request: Any) -> dict[str, Any]:
        return oidc_claims.user_claims(request.user, request.client)

    def get_discovery_claims(self, request: Any) -> list[str]:
        return list(oidc_claims.SUPPORTED_CLAIMS)

    def get_oidc_claims(self, token: Any, token_handler: Any, request: Any) -> dict[str, Any]:
        return oidc_claims.claims_for(
            request.user,
            request.client,
            scopes=request.scopes,
            requested=getattr(request, "claims", None),
            target="id_token",
        )

    def get_userinfo_claims(self, request: Any) -> dict[str, Any]:
        return oidc_claims.claims_for(
            request.user, request.client, scopes=request.scopes, requested=None, target="userinfo"
        )

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: Any) -> tuple[dict[str, Any], Any]:
        claims, expires = super().get_id_token_dictionary(token, token_handler, request)
        # OIDC-NL: acr with eIDAS levels of assurance; no amr.
        claims["acr"] = getattr(request, "acr", None) or oidc_claims.ACR_LOW
        claims.pop("amr", None)
        return claims, expires

    def finalize_id_token(self, id_token: dict[str, Any], token: Any, token_handler: Any, request: Any) -> str:
        """Sign the ID token with the active database key of the client's algorithm."""
        from .tokens import id_token_algorithm, sign_jwt

        claims, expiration_time = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(**claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        signed = sign_jwt(id_token, alg=id_token_algorithm(request.client), typ="JWT")
        stored = self._save_id_token(id_token["jti"], request, expiration_time)
        request.id_token = stored
        request.access_token = stored
        return signed

    def _get_key_for_token(self, token: Any) -> Any:
        """Our own tokens verify against the published keyring (by kid), never a client key."""
        try:
            header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))
            public = keyring.public_jwk(header["kid"])
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return None
        return jwcrypto_jwk.JWK(**public) if public else None

    def _load_id_token(self, token: Any) -> Any:
        from oauth2_provider.models import get_id_token_model

        key = self._get_key_for_token(token)
        if key is None:
            return None
        try:
            claims = json.loads(jwcrypto_jwt.JWT(key=key, jwt=token).claims)
            return get_id_token_model().objects.get(jti=claims["jti"])
        except Exception:
            return None

    def validate_silent_login(self, request: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def validate_silent_authorization(self, request: Any) -> bool:
        # Consent is asked every time (REQUEST_APPROVAL_PROMPT=force); prompt=none cannot skip it.
        return False

    def is_origin_allowed(self, client_id: Any, origin: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        return bool(request.client and request.client.origin_allowed(origin))
