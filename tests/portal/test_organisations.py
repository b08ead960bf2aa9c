"""Dashboard, registering an organisation (identifiers validated), its page and its edit page."""

from __future__ import annotations

import pytest

from authserver.audit import AuditEvent
from onboarding import services
from onboarding.models import Membership, Organisation
from tests.factories import OrganisationFactory, UserFactory

from .conftest import OIN, RSIN

pytestmark = pytest.mark.django_db

PRIVATE = {
    "name": "Voorbeeld Software BV",
    "kind": "private",
    "oin": "",
    "kvk_number": "12345678",
    "rsin": "",
    "eidas_identifier": "",
    "country": "NL",
    "contact_name": "Anne de Vries",
    "contact_email": "anne@voorbeeld.nl",
    "contact_phone": "+31 20 123 4567",
}


@pytest.fixture
def signed_in(client):
    user = UserFactory()
    client.force_login(user)
    return user


def test_dashboard_lists_my_organisations_and_invitations_for_me(
    client, owner, pending_organisation, other_organisation
):
    inviter = Membership.objects.create(user=UserFactory(), organisation=other_organisation, role="owner").user
    services.invitation_create(
        organisation_id=other_organisation.pk, email=owner.user.email.upper(), role="developer", actor=inviter
    )
    client.force_login(owner.user)
    response = client.get("/portal/")
    assert response.status_code == 200
    html = response.content.decode()
    assert pending_organisation.name in html
    assert f"/portal/organisations/{pending_organisation.pk}/" in html
    assert "Pending" in html
    assert other_organisation.name in html, "the open invitation is listed"
    assert f"/portal/organisations/{other_organisation.pk}/" not in html, "but not as one of mine"


def test_dashboard_without_organisations_offers_to_register_one(client, signed_in):
    response = client.get("/portal/")
    assert response.status_code == 200
    assert "/portal/organisations/new/" in response.content.decode()


def test_register_an_organisation_makes_me_its_owner(client, signed_in):
    page = client.get("/portal/organisations/new/")
    assert page.status_code == 200
    assert "csrfmiddlewaretoken" in page.content.decode()
    response = client.post("/portal/organisations/new/", PRIVATE)
    organisation = Organisation.objects.get(kvk_number="12345678")
    assert response.status_code == 302
    assert response["Location"] == f"/portal/organisations/{organisation.pk}/"
    assert organisation.status == Organisation.Status.PENDING
    assert organisation.contact_email == "anne@voorbeeld.nl"
    membership = Membership.objects.get(organisation=organisation)
    assert (membership.user, membership.role) == (signed_in, Membership.Role.OWNER)
    assert AuditEvent.objects.filter(event="organisation.created", organisation=organisation).exists()


def test_register_a_government_organisation_with_its_oin(client, signed_in):
    response = client.post(
        "/portal/organisations/new/", {**PRIVATE, "kind": "government", "kvk_number": "", "oin": OIN, "rsin": RSIN}
    )
    assert response.status_code == 302
    assert Organisation.objects.get(oin=OIN).kind == Organisation.Kind.GOVERNMENT


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"kind": "government", "oin": "00000005123456780000"}, "oin", id="oin-bad-prefix"),
        pytest.param({"kind": "government", "oin": "0000000112345678"}, "oin", id="oin-too-short"),
        pytest.param({"kind": "government", "oin": "00000001111222333001"}, "oin", id="oin-no-zero-suffix"),
        pytest.param({"kvk_number": "1234567"}, "kvk_number", id="kvk-7-digits"),
        pytest.param({"kvk_number": "1234567a"}, "kvk_number", id="kvk-letter"),
        pytest.param({"rsin": "123456789"}, "rsin", id="rsin-fails-11-test"),
        pytest.param({"rsin": "12345"}, "rsin", id="rsin-short"),
        pytest.param(
            {"kind": "foreign", "kvk_number": "", "eidas_identifier": "DE-123"}, "eidas_identifier", id="eidas"
        ),
        pytest.param({"kind": "foreign", "kvk_number": ""}, "eidas_identifier", id="foreign-without-eidas"),
        pytest.param({"kind": "government", "kvk_number": ""}, "oin", id="government-without-oin"),
        pytest.param({"kvk_number": ""}, "kvk_number", id="private-without-kvk"),
        pytest.param({"name": ""}, "name", id="no-name"),
        pytest.param({"kind": "nonsense"}, "kind", id="unknown-kind"),
        pytest.param({"country": "Netherlands"}, "country", id="country-not-iso"),
        pytest.param({"contact_email": "not-an-email"}, "contact_email", id="contact-email"),
    ],
)
def test_bad_organisation_input_is_a_field_error_and_stores_nothing(client, signed_in, changes, field):
    response = client.post("/portal/organisations/new/", {**PRIVATE, **changes})
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors.get(field), form.errors
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Organisation.objects.exists()
    assert not Membership.objects.exists()
    assert not AuditEvent.objects.filter(event="organisation.created").exists()


@pytest.mark.parametrize(
    ("existing", "posted", "field"),
    [
        ({"kvk_number": "12345678"}, {}, "kvk_number"),
        ({"kind": "government", "oin": OIN, "kvk_number": ""}, {"kind": "government", "oin": OIN}, "oin"),
        (
            {"kind": "foreign", "eidas_identifier": "DE/NL/HRB123456", "kvk_number": ""},
            {"kind": "foreign", "kvk_number": "", "eidas_identifier": "DE/NL/HRB123456"},
            "eidas_identifier",
        ),
    ],
)
def test_duplicate_identifier_is_a_field_error_and_stores_nothing(client, signed_in, existing, posted, field):
    OrganisationFactory(**existing)
    response = client.post("/portal/organisations/new/", {**PRIVATE, **posted})
    assert response.status_code == 400
    assert "already registered" in " ".join(response.context["form"].errors[field])
    assert Organisation.objects.count() == 1
    assert not Membership.objects.exists()


def test_a_duplicate_the_service_finds_lands_on_the_field(client, signed_in, monkeypatch):
    """A duplicate committed between form validation and the service call is still a field error."""
    real_create = services.organisation_create

    def create_after_a_concurrent_request(**kwargs):
        OrganisationFactory(kvk_number=kwargs["kvk_number"])
        return real_create(**kwargs)

    monkeypatch.setattr(services, "organisation_create", create_after_a_concurrent_request)
    response = client.post("/portal/organisations/new/", PRIVATE)
    assert response.status_code == 400
    assert response.context["form"].errors["kvk_number"]
    assert Organisation.objects.count() == 1


def test_organisation_page_shows_status_trust_review_and_members(client, owner, developer, pending_organisation):
    response = owner.client().get(f"/portal/organisations/{pending_organisation.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert pending_organisation.name in html
    assert "Pending" in html
    assert "Low" in html
    assert "Not scheduled" in html
    assert developer.user.email in html
    assert "Developer" in html
    assert "Send invitation" in html


def test_owner_edits_a_pending_organisation(client, owner, pending_organisation):
    url = f"/portal/organisations/{pending_organisation.pk}/edit/"
    assert owner.client().get(url).status_code == 200
    data = {**PRIVATE, "name": "Gemeente Voorbeeld (nieuw)", "kind": "government", "oin": OIN, "kvk_number": ""}
    response = owner.client().post(url, data)
    assert response.status_code == 302
    pending_organisation.refresh_from_db()
    assert pending_organisation.name == "Gemeente Voorbeeld (nieuw)"


def test_edit_with_a_bad_identifier_changes_nothing(client, owner, pending_organisation):
    url = f"/portal/organisations/{pending_organisation.pk}/edit/"
    response = owner.client().post(url, {**PRIVATE, "kind": "government", "oin": "99999999123456780000"})
    assert response.status_code == 400
    assert response.context["form"].errors["oin"]
    pending_organisation.refresh_from_db()
    assert pending_organisation.oin == OIN
    assert pending_organisation.name == "Gemeente Voorbeeld"


def test_identity_of_an_active_organisation_is_fixed_but_contact_details_change(make_member, other_organisation):
    owner = make_member(other_organisation)
    url = f"/portal/organisations/{other_organisation.pk}/edit/"
    page = owner.client().get(url).content.decode()
    assert 'name="name"' in page
    assert "disabled" in page
    response = owner.client().post(
        url, {**PRIVATE, "name": "Renamed", "kvk_number": "87654321", "contact_name": "Bram Jansen"}
    )
    assert response.status_code == 302
    other_organisation.refresh_from_db()
    assert other_organisation.name == "Andere Organisatie BV"
    assert other_organisation.kvk_number != "87654321"
    assert other_organisation.contact_name == "Bram Jansen"
