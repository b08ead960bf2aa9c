"""The whole onboarding path in a real browser (issue 3, first acceptance item).

A representative signs up, confirms the emailed link, registers a government organisation,
applies with a PKIoverheid-style certificate and submits; an admin signs in to the admin with
password + TOTP, takes the application from the review queue, sees the OIN read from the
certificate beside the claimed one, and approves; the representative then sees the organisation
active. Every step goes through the UI (clicks and form fills); the ORM is only used to set up
the admin and to check the end state. Screenshots land in docs/screenshots/ (linked from the README).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from onboarding.models import KycApplication, Organisation
from tests.factories import PASSWORD, UserFactory
from tests.onboarding.certificates import OIN, ORGANISATION_NAME, make_leaf

REPRESENTATIVE = "anne.devries"
REPRESENTATIVE_EMAIL = "anne.devries@gemeente-voorbeeld.example"
REPRESENTATIVE_PASSWORD = "Zonnebloem-Kade-2024!"


def current_totp(device: TOTPDevice) -> str:
    """The code an authenticator app shows now (as tests/admin/conftest.py computes it)."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):0{device.digits}d}"


def verification_path(outbox) -> str:
    """The path of the link in the one verification mail (the mail names the configured issuer's host)."""
    mails = [m for m in outbox if REPRESENTATIVE_EMAIL in m.to]
    assert len(mails) == 1, [m.subject for m in outbox]
    assert mails[0].subject == "Confirm your email address"
    match = re.search(r"https?://\S+/accounts/verify/\S+", mails[0].body)
    assert match, mails[0].body
    url = urlsplit(match.group(0))
    return f"{url.path}?{url.query}" if url.query else url.path


def test_representative_applies_and_admin_approves_with_2fa(
    browser, page, live_server, mailoutbox, screenshot, tmp_path
):
    # --- 1. Sign up, confirm the emailed link, sign in ----------------------------------------
    page.goto("/accounts/signup/")
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("Username").fill(REPRESENTATIVE)
    page.get_by_label("Email address").fill(REPRESENTATIVE_EMAIL)
    page.get_by_label("Password:", exact=True).fill(REPRESENTATIVE_PASSWORD)
    page.get_by_label("Password confirmation").fill(REPRESENTATIVE_PASSWORD)
    screenshot(page, "signup")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    page.goto(verification_path(mailoutbox))
    expect(page.get_by_role("heading", name="Confirm your email address")).to_be_visible()
    expect(page.get_by_text(REPRESENTATIVE_EMAIL)).to_be_visible()
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Your email address is confirmed")

    page.get_by_label("Username").fill(REPRESENTATIVE)
    page.get_by_label("Password").fill(REPRESENTATIVE_PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your organisations")).to_be_visible()
    expect(page.get_by_text(f"signed in as {REPRESENTATIVE}")).to_be_visible()

    # --- 2. Register the organisation, apply, attach the certificate, submit ------------------
    page.get_by_role("link", name="Register an organisation").click()
    expect(page.get_by_role("heading", name="Register an organisation")).to_be_visible()
    page.get_by_label("Legal name").fill(ORGANISATION_NAME)
    page.get_by_label("Kind of organisation").select_option(label="Government")
    page.get_by_label("OIN:", exact=True).fill(OIN)
    page.get_by_label("Country").fill("NL")
    page.get_by_label("Contact name").fill("Anne de Vries")
    page.get_by_label("Contact email").fill(REPRESENTATIVE_EMAIL)
    page.get_by_role("button", name="Register organisation").click()
    expect(page.get_by_role("heading", name=ORGANISATION_NAME, exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(f"{ORGANISATION_NAME} is registered")

    page.get_by_role("navigation", name="Account").get_by_role("link", name="Portal").click()
    expect(page.get_by_role("heading", name="Your organisations")).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=ORGANISATION_NAME))
    expect(row).to_contain_text("Owner")
    expect(row).to_contain_text("Pending")
    screenshot(page, "portal-dashboard")

    row.get_by_role("link", name=ORGANISATION_NAME).click()
    page.get_by_role("link", name="Start an application").click()
    expect(page.get_by_role("heading", name=f"Apply for approval of {ORGANISATION_NAME}")).to_be_visible()
    page.get_by_label("Requested trust level").select_option(label="Substantial")
    page.get_by_label("Motivation").fill("We want our municipal services to call the national APIs.")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", name=f"Application for approval of {ORGANISATION_NAME}")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("The draft application is saved")

    certificate = tmp_path / "gemeente-voorbeeld.pem"
    certificate.write_bytes(make_leaf(oin=OIN, organisation=ORGANISATION_NAME).pem)
    upload = page.get_by_role("form", name="Attach evidence")
    upload.get_by_label("Kind of evidence").select_option(label="X.509 certificate (PKIoverheid)")
    upload.get_by_label("File").set_input_files(certificate)
    upload.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("gemeente-voorbeeld.pem is attached.")
    expect(page.get_by_role("heading", name="X.509 certificate (PKIoverheid): gemeente-voorbeeld.pem")).to_be_visible()
    # The certificate agrees with what was entered: no mismatch table for the applicant.
    expect(page.get_by_role("table", name="Where this document disagrees with what you entered")).to_have_count(0)

    page.get_by_role("button", name="Submit the application").click()
    expect(page.get_by_role("status")).to_contain_text("The application is submitted.")
    expect(page.get_by_text("Submitted: it waits for a reviewer.")).to_be_visible()
    expect(page.get_by_role("button", name="Submit the application")).to_have_count(0)
    screenshot(page, "application-submitted")

    # --- 3. The admin: password + TOTP, review queue, evidence, start review, approve ----------
    admin = UserFactory(username="reviewer", first_name="Ruud", last_name="Jansen", is_staff=True, is_superuser=True)
    device = TOTPDevice.objects.create(user=admin, name="Authenticator app", confirmed=True)
    admin_context = browser.new_context(base_url=live_server.url, viewport={"width": 1440, "height": 900})
    try:
        admin_page = admin_context.new_page()
        admin_page.set_default_timeout(15000)
        admin_page.goto("/admin/")
        expect(admin_page).to_have_url(re.compile(r"/admin/login/"))
        admin_page.get_by_label("Username").fill(admin.username)
        admin_page.get_by_label("Password").fill(PASSWORD)
        admin_page.get_by_label("Code from your authenticator app").fill(current_totp(device))
        screenshot(admin_page, "admin-login-2fa")
        admin_page.get_by_role("button", name="Log in").click()
        expect(admin_page.get_by_role("heading", name="Administration")).to_be_visible()

        admin_page.get_by_role("main").get_by_role("link", name="KYC applications").click()
        expect(admin_page).to_have_url(re.compile(r"/admin/onboarding/kycapplication/"))
        queue_row = admin_page.get_by_role("row").filter(has=admin_page.get_by_role("link", name=ORGANISATION_NAME))
        expect(queue_row).to_contain_text("Submitted")
        expect(queue_row).to_contain_text("Substantial")
        expect(queue_row).to_contain_text("0 of 1")
        screenshot(admin_page, "admin-review-queue")

        queue_row.get_by_role("link", name=ORGANISATION_NAME).click()
        expect(admin_page.get_by_role("heading", name=f"Review: {ORGANISATION_NAME} (Submitted)")).to_be_visible()
        # What the applicant claimed...
        claims = admin_page.locator("table.kyc-claims")
        expect(claims.get_by_role("row", name=re.compile(r"^OIN\b"))).to_contain_text(OIN)
        # ...beside what the certificate says: claimed and extracted OIN in one row, matching.
        oin_row = admin_page.locator("table.kyc-comparison").get_by_role(
            "row", name=re.compile(r"OIN \(subject serialNumber\)")
        )
        cells = oin_row.get_by_role("cell")
        expect(cells.nth(0)).to_have_text(OIN)  # claimed
        expect(cells.nth(1)).to_have_text(OIN)  # found in the evidence
        expect(cells.nth(2)).to_contain_text("matches")
        name_cells = admin_page.locator("table.kyc-comparison").get_by_role("row", name=re.compile("Legal name"))
        expect(name_cells.get_by_role("cell").nth(1)).to_have_text(ORGANISATION_NAME)
        expect(admin_page.locator("tr.kyc-mismatch")).to_have_count(0)

        admin_page.get_by_role("button", name="Start review").click()
        expect(admin_page.get_by_text("Review started. You are the reviewer.")).to_be_visible()
        expect(admin_page.get_by_role("heading", name=f"Review: {ORGANISATION_NAME} (In review)")).to_be_visible()
        expect(admin_page.get_by_role("button", name="Approve")).to_be_visible()
        screenshot(admin_page, "admin-review-evidence")

        admin_page.get_by_label("Note (optional)").fill("Certificate OIN matches the registered OIN.")
        admin_page.get_by_role("button", name="Approve").click()
        expect(
            admin_page.get_by_text(f"Approved: {ORGANISATION_NAME} is active with trust level substantial.")
        ).to_be_visible()
        expect(admin_page.get_by_role("heading", name=f"Review: {ORGANISATION_NAME} (Approved)")).to_be_visible()
    finally:
        admin_context.close()

    # --- 4. The representative (their own browser context) sees the organisation active -------
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Portal").click()
    page.reload()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=ORGANISATION_NAME))
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("Substantial")
    expect(row).to_contain_text("Approved")
    row.get_by_role("link", name=ORGANISATION_NAME).click()
    expect(page.get_by_text("Approved: the organisation may register clients.")).to_be_visible()
    screenshot(page, "portal-organisation-active")

    organisation = Organisation.objects.get(oin=OIN)
    assert organisation.status == Organisation.Status.ACTIVE
    assert organisation.trust_level == Organisation.TrustLevel.SUBSTANTIAL
    assert organisation.next_review_at is not None
    assert organisation.memberships.get().user.username == REPRESENTATIVE
    application = KycApplication.objects.get(organisation=organisation)
    assert application.status == KycApplication.Status.APPROVED
    assert application.reviewer == admin
    assert application.evidence.get().extracted["serial_number"] == OIN
