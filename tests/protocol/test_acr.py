"""acr in the ID token reflects how the user signed in when consenting (OIDC-NL, eIDAS LoA)."""

from __future__ import annotations

from django_otp.plugins.otp_totp.models import TOTPDevice

from authserver.oauth.claims import ACR_LOW, ACR_SUBSTANTIAL

from ..conftest import decode_unverified
from .test_errors import obtain_code, redeem


def test_password_sign_in_gives_eidas_low(client, user, web_client):
    code, verifier = obtain_code(client, user, web_client)
    id_token = redeem(client, web_client, code, verifier).json()["id_token"]
    assert decode_unverified(id_token)["acr"] == ACR_LOW


def test_second_factor_at_consent_gives_eidas_substantial(client, user, web_client):
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    client.force_login(user)
    session = client.session
    session["otp_device_id"] = device.persistent_id  # what django_otp.login() records
    session.save()

    code, verifier = obtain_code(client, user, web_client)
    # The token call carries no session: the level was recorded when the user consented.
    client.logout()
    id_token = redeem(client, web_client, code, verifier).json()["id_token"]
    assert decode_unverified(id_token)["acr"] == ACR_SUBSTANTIAL
