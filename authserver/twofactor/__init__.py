"""Two-factor authentication for staff (django-otp): the OTP-only admin site and enrolment.

A staff user reaches the admin only with a session verified by a confirmed device (TOTP, or a
static backup code). Enrolment lives at ``/accounts/2fa/``.
"""
