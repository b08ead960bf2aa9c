"""Every organisation page is a 404 to non-members, whatever ids they guess; no input gives a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from onboarding import services
from onboarding.models import Evidence, Invitation, KycApplication, KycMessage, Membership, Organisation
from tests.factories import UserFactory

from .conftest import PDF

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim(owner, draft, pending_organisation):
    """pending_organisation with an application, evidence, an invitation and a developer."""
    services.evidence_attach(
        application_id=draft.pk, kind="kvk_extract", filename="e.pdf", content=PDF, content_type="", actor=owner.user
    )
    invitation, _token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="x@example.org", role="developer", actor=owner.user
    )
    developer = Membership.objects.create(user=UserFactory(), organisation=pending_organisation, role="developer")
    return {"organisation": pending_organisation, "application": draft, "invitation": invitation, "member": developer}


def victim_urls(victim, own_organisation: Organisation | None = None) -> list[tuple[str, str, dict]]:
    """(method, url, data) for every portal page about the victim's organisation."""
    org = victim["organisation"].pk
    app = victim["application"].pk
    base = f"/portal/organisations/{org}"
    urls = [
        ("get", f"{base}/", {}),
        ("get", f"{base}/edit/", {}),
        ("post", f"{base}/edit/", {"name": "Hijacked", "kind": "private", "kvk_number": "87654321", "country": "NL"}),
        ("post", f"{base}/invitations/", {"email": "spy@example.org", "role": "owner"}),
        ("post", f"{base}/invitations/{victim['invitation'].pk}/revoke/", {}),
        ("post", f"{base}/members/{victim['member'].pk}/end/", {}),
        ("get", f"{base}/applications/new/", {}),
        ("post", f"{base}/applications/new/", {"requested_trust_level": "low", "motivation": ""}),
        ("get", f"{base}/applications/{app}/", {}),
        ("post", f"{base}/applications/{app}/edit/", {"requested_trust_level": "high", "motivation": "x"}),
        ("post", f"{base}/applications/{app}/evidence/", {"kind": "kvk_extract"}),
        ("post", f"{base}/applications/{app}/submit/", {}),
        ("post", f"{base}/applications/{app}/messages/", {"body": "hello"}),
    ]
    if own_organisation is not None:
        # The victim's application, invitation and membership ids under the attacker's own organisation.
        own = f"/portal/organisations/{own_organisation.pk}"
        urls += [
            ("get", f"{own}/applications/{app}/", {}),
            ("post", f"{own}/applications/{app}/edit/", {"requested_trust_level": "high", "motivation": "x"}),
            ("post", f"{own}/applications/{app}/evidence/", {"kind": "kvk_extract"}),
            ("post", f"{own}/applications/{app}/submit/", {}),
            ("post", f"{own}/applications/{app}/messages/", {"body": "hello"}),
            ("post", f"{own}/invitations/{victim['invitation'].pk}/revoke/", {}),
            ("post", f"{own}/members/{victim['member'].pk}/end/", {}),
        ]
    return urls


def snapshot(victim) -> tuple:
    organisation = Organisation.objects.get(pk=victim["organisation"].pk)
    application = KycApplication.objects.get(pk=victim["application"].pk)
    return (
        organisation.name,
        organisation.status,
        application.status,
        application.requested_trust_level,
        Evidence.objects.count(),
        KycMessage.objects.count(),
        KycApplication.objects.count(),
        Invitation.objects.filter(revoked_at__isnull=True).count(),
        Membership.objects.filter(ended_at__isnull=True).count(),
    )


def test_a_member_of_another_organisation_gets_404_everywhere(victim, outsider, other_organisation):
    client = outsider.client()
    before = snapshot(victim)
    for method, url, data in victim_urls(victim, own_organisation=other_organisation):
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    assert snapshot(victim) == before
    assert victim["organisation"].name not in client.get("/portal/").content.decode()


def test_a_signed_in_stranger_gets_404_and_staff_too(victim):
    for user in (UserFactory(), UserFactory(is_staff=True)):
        client = Client()
        client.force_login(user)
        for method, url, data in victim_urls(victim):
            assert getattr(client, method)(url, data).status_code == 404, (user, method, url)


def test_a_former_member_gets_404(victim):
    member = victim["member"]
    client = Client()
    client.force_login(member.user)
    assert client.get(f"/portal/organisations/{victim['organisation'].pk}/").status_code == 200
    services.membership_end(membership_id=member.pk, actor=member.user)
    assert client.get(f"/portal/organisations/{victim['organisation'].pk}/").status_code == 404


def test_anonymous_visitors_are_sent_to_login(client, victim):
    for method, url, data in victim_urls(victim):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize(
    "url",
    [
        "/portal/organisations/999999/",
        "/portal/organisations/0/applications/1/",
        "/portal/organisations/abc/",
        "/portal/organisations/1/applications/xyz/",
        "/portal/organisations/-1/",
        "/portal/organisations/99999999999999999999999/",
    ],
)
def test_unknown_or_malformed_ids_are_404(owner, url):
    assert owner.client().get(url).status_code == 404
    assert owner.client().post(url, {}).status_code in (404, 405)


def test_developer_may_look_but_every_change_is_refused(developer, victim):
    client = developer.client()
    org = victim["organisation"].pk
    for method, url, data in victim_urls(victim):
        response = getattr(client, method)(url, data)
        if url in (
            f"/portal/organisations/{org}/",
            f"/portal/organisations/{org}/applications/{victim['application'].pk}/",
        ):
            assert response.status_code == 200, url
        else:
            assert response.status_code == 403, (method, url, response.status_code)


def test_actions_take_post_only(owner, draft):
    base = f"/portal/organisations/{draft.organisation_id}"
    for path in ("invitations/", f"applications/{draft.pk}/submit/", f"applications/{draft.pk}/evidence/"):
        assert owner.client().get(f"{base}/{path}").status_code == 405


def test_every_form_carries_a_csrf_token_and_posts_without_one_are_refused(owner, draft):
    client = owner.client()
    for url in (
        "/portal/organisations/new/",
        f"/portal/organisations/{draft.organisation_id}/",
        f"/portal/organisations/{draft.organisation_id}/applications/{draft.pk}/",
    ):
        html = client.get(url).content.decode()
        assert html.count("<form") == html.count("csrfmiddlewaretoken"), url
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner.user)
    base = f"/portal/organisations/{draft.organisation_id}"
    assert strict.post(f"{base}/applications/{draft.pk}/submit/").status_code == 403
    assert strict.post(f"{base}/invitations/", {"email": "a@example.org", "role": "admin"}).status_code == 403
    assert not Invitation.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"name": "x" * 10000, "kind": "private", "kvk_number": "12345678", "country": "NL"},
        {"name": "\x00null", "kind": "private", "kvk_number": "12345678", "country": "NL"},
        {"name": ["a", "b"], "kind": ["private", "government"], "oin": "💥" * 20, "country": "ÑL"},
        {},
    ],
)
def test_odd_input_never_gives_a_server_error(owner, data):
    response = owner.client().post("/portal/organisations/new/", data)
    assert response.status_code in (302, 400)
    assert Organisation.objects.count() == 1  # only the fixture's
