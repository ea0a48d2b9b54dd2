"""Bearer tokens: kept in configuration only as SHA-256 digests.

A browser user signs in once on the web pages with a read token; the token
is then kept in the :data:`READ_COOKIE` cookie (``HttpOnly``: no script can
read it; ``SameSite=Strict``: no other site's page can make the browser send
it), which grants reading only, never writing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: The cookie that carries a browser's read token (see the module docstring).
READ_COOKIE = "gwfollow_read"


def new_token() -> str:
    """A fresh random token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The lower-case SHA-256 hex digest stored in the configuration."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, digests: tuple[str, ...]) -> bool:
    """Constant-time check of a presented token against configured digests."""
    d = token_digest(token)
    ok = False
    for ref in digests:
        ok |= hmac.compare_digest(d, ref)
    return ok
