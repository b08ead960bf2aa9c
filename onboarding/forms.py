"""Forms of the representatives' portal and of sign-up.

Forms check input; the services change state. A view validates its form, calls one service,
and turns the service's ValidationError into field errors and its DomainError into a
non-field error, so bad input never stores anything.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.core.exceptions import ValidationError

from .models import Evidence, KycApplication, Membership, Organisation, User

# The largest upload the portal reads into memory; evidence.check_pdf applies the same limit.
DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024 * 1024


def max_upload_bytes() -> int:
    return int(getattr(settings, "ONBOARDING_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


class SignUpForm(UserCreationForm):
    """Username, email address and the password twice, checked by AUTH_PASSWORD_VALIDATORS."""

    email = forms.EmailField(
        label="Email address",
        max_length=254,
        help_text="We send a link to this address; your account works once you open it.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta:
        model = User
        fields = ("username", "email")
        field_classes = {"username": UsernameField}

    def clean_username(self) -> str:
        # A username is the one thing sign-up cannot keep quiet about, as two accounts cannot
        # share it; the message stays neutral.
        username = self.cleaned_data.get("username", "")
        if username and User.objects.filter(username__iexact=username).exists():
            raise ValidationError("This username is not available; choose another.", code="unavailable")
        return username


class ResendVerificationForm(forms.Form):
    email = forms.EmailField(label="Email address", widget=forms.EmailInput(attrs={"autocomplete": "email"}))


class OrganisationForm(forms.ModelForm):
    """The organisation's identity; the model's validators check OIN, KvK number, RSIN and eIDAS."""

    IDENTIFIERS = {"oin": "OIN", "kvk_number": "KvK number", "eidas_identifier": "eIDAS legal identifier"}

    class Meta:
        model = Organisation
        fields = (
            "name",
            "kind",
            "oin",
            "kvk_number",
            "rsin",
            "eidas_identifier",
            "country",
            "contact_name",
            "contact_email",
            "contact_phone",
        )
        labels = {"eidas_identifier": "eIDAS legal identifier", "name": "Legal name", "kind": "Kind of organisation"}
        help_texts = {
            "oin": "20 digits: a known prefix, the main number and a zero suffix. Required for government.",
            "kvk_number": "8 digits, from the Chamber of Commerce (KvK) register.",
            "rsin": "9 digits; passes the 11-test.",
            "eidas_identifier": "For EU organisations, e.g. DE/NL/HRB123456.",
        }
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "organization"}),
            "oin": forms.TextInput(attrs={"inputmode": "numeric"}),
            "kvk_number": forms.TextInput(attrs={"inputmode": "numeric"}),
            "rsin": forms.TextInput(attrs={"inputmode": "numeric"}),
            "country": forms.TextInput(attrs={"autocomplete": "country", "maxlength": 2}),
            "contact_name": forms.TextInput(attrs={"autocomplete": "name"}),
            "contact_email": forms.EmailInput(attrs={"autocomplete": "email"}),
            "contact_phone": forms.TextInput(attrs={"autocomplete": "tel"}),
        }

    # Checked on approval, so fixed once the organisation is no longer pending (services.organisation_update).
    IDENTITY_FIELDS = ("name", "kind", "oin", "kvk_number", "rsin", "eidas_identifier", "country")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.identity_locked:
            for name in self.IDENTITY_FIELDS:
                self.fields[name].disabled = True
                self.fields[name].help_text = "Fixed after approval; ask the administrators to change it."

    @property
    def identity_locked(self) -> bool:
        return bool(self.instance.pk) and self.instance.status != Organisation.Status.PENDING

    def clean_country(self) -> str:
        country = str(self.cleaned_data.get("country", "")).strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise ValidationError("Use the two-letter ISO 3166-1 country code, e.g. NL.", code="country")
        return country

    def _clean_identifier(self, field: str) -> str:
        value = str(self.cleaned_data.get(field, "")).strip()
        if value:
            others = Organisation.objects.filter(**{field: value})
            if self.instance.pk:
                others = others.exclude(pk=self.instance.pk)
            if others.exists():
                raise ValidationError(
                    f"An organisation with this {self.IDENTIFIERS[field]} is already registered.", code="duplicate"
                )
        return value

    def clean_oin(self) -> str:
        return self._clean_identifier("oin")

    def clean_kvk_number(self) -> str:
        return self._clean_identifier("kvk_number")

    def clean_eidas_identifier(self) -> str:
        return self._clean_identifier("eidas_identifier")

    def clean_rsin(self) -> str:
        return str(self.cleaned_data.get("rsin", "")).strip()


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address", widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(label="Role", choices=Membership.Role.choices, initial=Membership.Role.DEVELOPER)


class KycApplicationForm(forms.ModelForm):
    class Meta:
        model = KycApplication
        fields = ("requested_trust_level", "motivation")
        labels = {"requested_trust_level": "Requested trust level"}
        help_texts = {
            "requested_trust_level": "After the eIDAS levels of assurance. High needs two reviewers to approve.",
        }
        widgets = {"motivation": forms.Textarea(attrs={"rows": 5})}


class EvidenceForm(forms.Form):
    """One document; the bytes go to services.evidence_attach, which parses and checks them."""

    kind = forms.ChoiceField(label="Kind of evidence", choices=Evidence.Kind.choices)
    file = forms.FileField(
        label="File",
        help_text="Certificate: PEM or DER. KvK extract: PDF. eIDAS attestation: JSON or PDF.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = max_upload_bytes() / (1024 * 1024)
        self.fields["file"].help_text = f"{self.fields['file'].help_text} At most {limit:g} MiB."

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = max_upload_bytes()
        if upload.size is None or upload.size > limit:
            raise ValidationError(f"The file is larger than {limit / (1024 * 1024):g} MiB.", code="too_large")
        if upload.size == 0:
            raise ValidationError("The file is empty.", code="empty")
        return upload

    def content(self) -> bytes:
        upload = self.cleaned_data["file"]
        upload.seek(0)
        return bytes(upload.read())


class KycMessageForm(forms.Form):
    body = forms.CharField(
        label="Your answer",
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="The reviewer sees this beside the application.",
    )
