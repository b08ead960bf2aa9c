import requests
from authlib.integrations.requests_client import OAuth2Session


def test_client_credentials_with_basic_over_http(issuer, cc_basic):
    session = OAuth2Session(cc_basic.client_id, cc_basic.secret, token_endpoint_auth_method="client_secret_basic")
    token = session.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials", scope="orders:read")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "orders:read"
    jwks = requests.get(f"{issuer}/oauth/jwks", timeout=5).json()
    assert jwks["keys"]
