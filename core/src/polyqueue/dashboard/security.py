"""Who may use the dashboard, and proof that a form was posted from it.

Auth is `TokenAuth` (a bearer token, or a login form that sets a signed cookie), `BasicAuth`
(the browser's own prompt) or None (only for a loopback server: `check_exposure`). CSRF: a
random nonce in an HttpOnly, SameSite=Strict cookie; every form carries
HMAC(secret, nonce), and a POST without the matching token is refused with 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polyqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "AUTH_COOKIE",
    "CSRF_COOKIE",
    "Auth",
    "BasicAuth",
    "Signer",
    "TokenAuth",
    "check_exposure",
    "is_loopback",
]

CSRF_COOKIE = "polyqueue_csrf"
AUTH_COOKIE = "polyqueue_auth"


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """Requests carry `Authorization: Bearer <token>`, or the cookie the login form sets."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.token) < 16:  # noqa: PLR2004
            raise ConfigurationError("dashboard token: use at least 16 characters")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP basic auth with one user name and password."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username or ":" in self.username or not self.password:
            raise ConfigurationError(
                "dashboard basic auth: give USER:PASSWORD with a non-empty user (no ':') and "
                "password"
            )

    @classmethod
    def parse(cls, value: str) -> BasicAuth:
        """`USER:PASSWORD` as a `BasicAuth`."""
        username, colon, password = value.partition(":")
        if not colon:
            raise ConfigurationError("dashboard basic auth: expected USER:PASSWORD")
        return cls(username, password)


Auth = TokenAuth | BasicAuth | None


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth: Auth) -> None:
    """Refuse to serve on a non-loopback `host` without auth."""
    if auth is None and not is_loopback(host):
        raise ConfigurationError(
            f"the dashboard would serve {host} without authentication: anyone who can reach "
            "it could cancel and requeue jobs. Set POLYQUEUE_DASHBOARD_TOKEN (--token-env) or "
            "POLYQUEUE_DASHBOARD_BASIC_AUTH=user:password (--basic-auth-env), or bind "
            "127.0.0.1"
        )


class Signer:
    """HMACs with a secret of this process (or a given one): CSRF tokens, the login cookie."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def sign(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 of `value` for `purpose`, hex."""
        message = f"{purpose}\0{value}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def verify(self, purpose: str, value: str, signature: str) -> bool:
        """Whether `signature` is `sign(purpose, value)` (in constant time)."""
        return hmac.compare_digest(self.sign(purpose, value).encode(), signature.encode())

    @staticmethod
    def nonce() -> str:
        """A new random nonce for a browser session's CSRF cookie."""
        return secrets.token_urlsafe(24)


def authenticated(request: Request, auth: Auth, signer: Signer) -> bool:
    """Whether `request` satisfies `auth`."""
    if auth is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if isinstance(auth, BasicAuth):
        return scheme.lower() == "basic" and _basic_matches(credentials, auth)
    if scheme.lower() == "bearer":
        return hmac.compare_digest(credentials.strip().encode(), auth.token.encode())
    cookie = request.cookies.get(AUTH_COOKIE, "")
    return bool(cookie) and signer.verify("login", token_id(auth), cookie)


def token_id(auth: TokenAuth) -> str:
    """What the login cookie signs: a digest of the token, so a new token logs everyone out."""
    return hashlib.sha256(auth.token.encode()).hexdigest()


def _basic_matches(credentials: str, auth: BasicAuth) -> bool:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    username, _, password = decoded.partition(":")
    expected = f"{auth.username}:{auth.password}".encode()
    return hmac.compare_digest(f"{username}:{password}".encode(), expected)
