"""Who may use the console: password hashes, signed session cookies, CSRF tokens. Pure functions.

Passwords are stored as ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (``logconsole
hash-password`` makes one): the standard library's PBKDF2, nothing to install, and the format
Django uses, so operators recognise it. A session is a cookie holding the user, role, expiry and
CSRF token, signed with HMAC-SHA256 under a secret (from the INI, or random per start: sessions
then end at a restart). Writes must carry the session's CSRF token in a header, which a page of
another site cannot read nor send without a CORS preflight the console never allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

__all__ = ["Session", "SessionSigner", "hash_password", "verify_password"]

ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash; False for any malformed hash."""
    try:
        algo, iterations, salt, digest = stored.split("$")
        if algo != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(iterations))
        return hmac.compare_digest(got, _unb64(digest))
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True)
class Session:
    user: str
    role: str  # "read" or "admin"
    csrf: str
    expires: float

    @property
    def admin(self) -> bool:
        return self.role == "admin"


class SessionSigner:
    """Makes and checks the session cookie's value: ``<payload>.<hmac>``."""

    def __init__(self, secret: str | None, lifetime_s: float) -> None:
        self.key = hashlib.sha256((secret or secrets.token_hex(32)).encode()).digest()
        self.lifetime_s = lifetime_s

    def new(self, user: str, role: str, now: float | None = None) -> tuple[Session, str]:
        now = time.time() if now is None else now
        s = Session(user, role, secrets.token_urlsafe(24), now + self.lifetime_s)
        payload = _b64(json.dumps([s.user, s.role, s.csrf, s.expires], separators=(",", ":")).encode())
        return s, f"{payload}.{self._mac(payload)}"

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None if absent, forged, altered or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            user, role, csrf, expires = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if (time.time() if now is None else now) >= float(expires):
            return None
        return Session(str(user), str(role), str(csrf), float(expires))

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())
