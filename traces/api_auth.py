"""Who may call the JSON API.

Reads follow `TRACER_LOGIN_REQUIRED` (open, or a session or token needed); writes
always need an API token (`Authorization: Bearer <token>`) or a logged-in session
with its CSRF token, and then a model permission (checked by the endpoint).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from ninja.errors import AuthenticationError, HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from .models import ApiToken

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# last_used is a write: at most one per token per minute, not one per request.
LAST_USED_EVERY = timedelta(minutes=1)


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`, a token made in the admin or with
    `manage.py create_api_token`. A token that is sent but wrong is a 401, not
    ignored: a typo in CI should fail loudly, not read anonymously."""

    def __call__(self, request):
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(message="Send the token as `Authorization: Bearer <token>`.")
        return self.authenticate(request, token.strip())

    def authenticate(self, request, token):
        row = (
            ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash(token)).first()
        )
        if row is None or not row.user.is_active:
            raise AuthenticationError(message="This API token is not valid (or was revoked).")
        now = timezone.now()
        if row.last_used is None or now - row.last_used > LAST_USED_EVERY:
            ApiToken.objects.filter(pk=row.pk).update(last_used=now)
        request.user = row.user
        return row.user


class SessionCookie(APIKeyCookie):
    """A logged-in session (the site's own login). Writes must carry the CSRF token
    (`X-CSRFToken` header) like any form of the site."""

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in SAFE_METHODS and check_csrf(request):
            raise HttpError(
                403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken."
            )
        return user

    def authenticate(self, request, key):  # pragma: no cover - __call__ decides
        return None


class OpenReads:
    """Anyone may read when the site does not require a login (the default)."""

    def __call__(self, request):
        if request.method in SAFE_METHODS and not settings.TRACER_LOGIN_REQUIRED:
            return request.user
        return None
