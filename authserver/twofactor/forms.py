from django import forms


class TokenForm(forms.Form):
    """The six-digit code the authenticator app shows now."""

    token = forms.RegexField(
        label="Code from the app",
        regex=r"^\d{6}$",
        max_length=6,
        strip=True,
        error_messages={"invalid": "Enter the 6-digit code your authenticator app shows."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9]{6}", "size": 8}
        ),
    )
