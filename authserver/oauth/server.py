"""The oauthlib server with only what this server supports.

OAUTH-NL and RFC 9700: authorization code (with OpenID Connect) and client credentials,
refresh tokens for the former; no implicit, hybrid, password or device grants, and no
``plain`` PKCE. A grant that is not registered here is ``unsupported_grant_type``.
"""

from __future__ import annotations

from typing import Any

from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.endpoints import (
    AuthorizationEndpoint,
    IntrospectEndpoint,
    ResourceEndpoint,
    RevocationEndpoint,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc6749.grant_types import AuthorizationCodeGrant as OAuth2AuthorizationCodeGrant
from oauthlib.oauth2.rfc6749.grant_types import ClientCredentialsGrant
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256
from oauthlib.oauth2.rfc6749.tokens import BearerToken
from oauthlib.openid.connect.core.endpoints.userinfo import UserInfoEndpoint
from oauthlib.openid.connect.core.grant_types import AuthorizationCodeGrant as OIDCAuthorizationCodeGrant
from oauthlib.openid.connect.core.grant_types import RefreshTokenGrant
from oauthlib.openid.connect.core.grant_types.dispatchers import (
    AuthorizationCodeGrantDispatcher,
    AuthorizationTokenGrantDispatcher,
)

from .tokens import access_token_lifetime
from .validator import CODE_VERIFIER, S256_CHALLENGE


class StrictAuthorizationCodeGrant(OAuth2AuthorizationCodeGrant):
    # RFC 9700 §2.1.1 / OAUTH-NL: S256 only; a missing method means "plain" and is refused.
    _code_challenge_methods = {"S256": code_challenge_method_s256}


class StrictOIDCAuthorizationCodeGrant(OIDCAuthorizationCodeGrant):
    """OpenID Connect over the strict grant.

    oauthlib's ``__init__`` registers the OIDC request validator (nonce, prompt, max_age) and
    the ID token modifier on the proxy target it creates. Replacing that target afterwards
    drops both: no nonce reaches the grant and the token response has no ``id_token``
    (OIDC Core §3.1.3.3). So the target oauthlib built is kept and made strict instead.
    """

    def __init__(self, request_validator: Any = None, **kwargs: Any) -> None:
        super().__init__(request_validator, **kwargs)
        self.proxy_target._code_challenge_methods = StrictAuthorizationCodeGrant._code_challenge_methods


def require_state_and_challenge(request: Any) -> dict[str, Any]:
    """OAUTH-NL: state is required; the S256 challenge must be well formed (RFC 7636 §4.2)."""
    if not request.state:
        raise errors.InvalidRequestError(description="The state parameter is required.", request=request)
    challenge = request.code_challenge
    if challenge is not None and not S256_CHALLENGE.match(challenge):
        raise errors.InvalidRequestError(
            description="code_challenge must be the 43-character BASE64URL(SHA-256(code_verifier)).",
            request=request,
        )
    if request.scopes and "openid" in request.scopes and not request.nonce:
        # OIDC-NL: nonce is required in authentication requests.
        raise errors.InvalidRequestError(description="The nonce parameter is required with openid.", request=request)
    return {}


def require_well_formed_verifier(request: Any) -> None:
    """RFC 7636 §4.1: code_verifier is 43 to 128 unreserved characters."""
    verifier = request.code_verifier
    if verifier is not None and not CODE_VERIFIER.match(verifier):
        raise errors.InvalidGrantError(
            description="code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~].", request=request
        )


class Server(
    AuthorizationEndpoint,
    IntrospectEndpoint,
    TokenEndpoint,
    ResourceEndpoint,
    RevocationEndpoint,
    UserInfoEndpoint,
):
    def __init__(
        self,
        request_validator: Any,
        token_expires_in: Any = None,
        token_generator: Any = None,
        refresh_token_generator: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        validators = {"pre_auth": [require_state_and_challenge], "pre_token": [require_well_formed_verifier]}
        self.auth_grant = StrictAuthorizationCodeGrant(request_validator, **validators)
        self.openid_connect_auth = StrictOIDCAuthorizationCodeGrant(request_validator, **validators)
        self.credentials_grant = ClientCredentialsGrant(request_validator)
        self.refresh_grant = RefreshTokenGrant(request_validator)
        self.bearer = BearerToken(request_validator, token_generator, access_token_lifetime, refresh_token_generator)
        self.auth_grant_choice = AuthorizationCodeGrantDispatcher(
            default_grant=self.auth_grant, oidc_grant=self.openid_connect_auth
        )
        AuthorizationEndpoint.__init__(
            self,
            default_response_type="code",
            response_types={"code": self.auth_grant_choice},
            default_token_type=self.bearer,
        )
        self.token_grant_choice = AuthorizationTokenGrantDispatcher(
            request_validator, default_grant=self.auth_grant, oidc_grant=self.openid_connect_auth
        )
        TokenEndpoint.__init__(
            self,
            default_grant_type="authorization_code",
            grant_types={
                "authorization_code": self.token_grant_choice,
                "client_credentials": self.credentials_grant,
                "refresh_token": self.refresh_grant,
            },
            default_token_type=self.bearer,
        )
        ResourceEndpoint.__init__(self, default_token="Bearer", token_types={"Bearer": self.bearer})
        RevocationEndpoint.__init__(self, request_validator)
        IntrospectEndpoint.__init__(self, request_validator)
        UserInfoEndpoint.__init__(self, request_validator)
