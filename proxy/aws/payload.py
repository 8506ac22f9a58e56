"""The body of a lean send: the raw message in base64 between the fields before and
after it, and its SHA-256, which SigV4 signs.

A message of at least `THREAD_THRESHOLD` octets is encoded and hashed in slices, in a
worker thread: base64 and bytes.replace hold the GIL for their whole call, and one call
on a 10 MB message would hold the event loop with it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Final

from proxy.message import Octets

# Raw messages at least this large are encoded and hashed in a worker thread.
THREAD_THRESHOLD: Final = 256 * 1024
# Base64 input slice: a multiple of 3, so the slices' encodings concatenate cleanly.
_SLICE: Final = 3 * 256 * 1024
_HASH_SLICE: Final = 1024 * 1024


Escape = Callable[[bytes], bytes]


def escape_base64(encoded: bytes) -> bytes:
    """`quote_plus` of base64 text: only `+`, `/` and `=` are outside its safe set."""
    return encoded.replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D")


def encode_body(
    head: bytes, raw: Octets, tail: bytes, escape: Escape = escape_base64
) -> tuple[bytes, str]:
    """The body (`raw` in base64, passed through `escape`, between `head` and `tail`)
    and its SHA-256 (hex), in one pass for small messages."""
    body = b"".join((head, escape(base64.b64encode(raw)), tail))
    return body, hashlib.sha256(body).hexdigest()


def encode_body_sliced(
    head: bytes, raw: Octets, tail: bytes, escape: Escape = escape_base64
) -> tuple[bytes, str]:
    """The same as `encode_body`, in slices: for a worker thread, so that no single
    C call holds the GIL for long (base64 and bytes.replace do not release it)."""
    view = memoryview(raw)
    parts = [head]
    for start in range(0, len(raw), _SLICE):
        parts.append(escape(base64.b64encode(view[start : start + _SLICE])))
    parts.append(tail)
    body = b"".join(parts)
    digest = hashlib.sha256()
    body_view = memoryview(body)
    for start in range(0, len(body), _HASH_SLICE):
        digest.update(body_view[start : start + _HASH_SLICE])  # releases the GIL
    return body, digest.hexdigest()
