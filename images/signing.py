"""Signed image URLs, so only URLs the app's backend made can have the edge resize.

Unsigned, anyone could ask for every width x format x quality of every image and make the
edge burn CPU and fill its cache. The backend signs each URL with a key it shares with the
edge; the edge checks against all active keys, so keys rotate without breaking URLs: add
the new key to the edge, switch the backend to it, drop the old key once its URLs expire.

What is signed, byte for byte (any language can reproduce it):

1. Split ``path_and_query`` at the first ``?``. The path is taken exactly as sent, still
   percent-encoded (``/a%20b`` and ``/a b`` are different paths).
2. Split the query at ``&``; drop empty pieces and every piece whose name (the text before
   the first ``=``, or the whole piece) is ``sig``.
3. Sort the pieces by name, stably: pieces with the same name keep their order, because
   ``w=1&w=2`` and ``w=2&w=1`` may mean different things. Names compare as ASCII; names
   and values are neither decoded nor re-encoded.
4. The canonical form is the path, plus ``?`` and the pieces joined with ``&`` if any.

The signature is the first 24 bytes (192 bits) of HMAC-SHA256(key, canonical form as
UTF-8), base64url without padding: 32 characters, sent as the ``sig`` query parameter.
Use a dedicated random key of at least 32 bytes (``secrets.token_bytes(32)``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

__all__ = [
    "MIN_KEY_BYTES", "SIGNATURE_LENGTH", "SIGNATURE_PARAM", "canonical", "check_key", "sign",
    "signature_of", "signed_url", "verify",
]  # fmt: skip

SIGNATURE_PARAM = "sig"
MIN_KEY_BYTES = 32
_DIGEST_BYTES = 24  # 192 bits: far past guessing, and a whole number of base64 groups
SIGNATURE_LENGTH = _DIGEST_BYTES * 4 // 3


def check_key(key: bytes) -> None:
    """Raise ValueError unless ``key`` is usable: bytes, at least MIN_KEY_BYTES long."""
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        size = len(key) if isinstance(key, bytes) else type(key).__name__
        raise ValueError(f"a signing key must be at least {MIN_KEY_BYTES} bytes, got {size}")


def canonical(path_and_query: str) -> str:
    """The string that is signed for ``path_and_query`` (see the module docstring)."""
    path, _, query = path_and_query.partition("?")
    pieces = [piece for piece in query.split("&") if piece and _name(piece) != SIGNATURE_PARAM]
    pieces.sort(key=_name)
    return f"{path}?{'&'.join(pieces)}" if pieces else path


def sign(path_and_query: str, key: bytes) -> str:
    """The signature of ``path_and_query`` (any ``sig`` already in it is ignored)."""
    check_key(key)
    return _signature(canonical(path_and_query).encode(), key).decode("ascii")


def signed_url(path_and_query: str, key: bytes) -> str:
    """``path_and_query`` with its ``sig`` parameter appended."""
    separator = "&" if "?" in path_and_query else "?"
    return f"{path_and_query}{separator}{SIGNATURE_PARAM}={sign(path_and_query, key)}"


def signature_of(path_and_query: str) -> str | None:
    """The ``sig`` parameter's value; None when it is missing or given more than once."""
    _, _, query = path_and_query.partition("?")
    found = [
        piece.partition("=")[2] for piece in query.split("&") if _name(piece) == SIGNATURE_PARAM
    ]
    return found[0] if len(found) == 1 else None


def verify(path_and_query: str, signature: str, keys: Sequence[bytes]) -> bool:
    """Whether ``signature`` signs ``path_and_query`` under any of ``keys``.

    Every key is tried (no early exit), each comparison in constant time.
    """
    for key in keys:
        check_key(key)
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:
        return False
    if len(given) != SIGNATURE_LENGTH:
        return False
    message = canonical(path_and_query).encode()
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(_signature(message, key), given)
    return valid


def _signature(message: bytes, key: bytes) -> bytes:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_DIGEST_BYTES])


def _name(piece: str) -> str:
    return piece.partition("=")[0]
