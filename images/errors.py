"""The one error a transformation raises, with a stable kind the edge maps to a status."""

from __future__ import annotations

from typing import Literal, get_args

# too-large (413): the source has more bytes than Limits.max_source_bytes.
# too-many-pixels (413): the header declares more than Limits.max_pixels; nothing was decoded.
# unsupported-format (415): not an image, or a format outside Limits.accept_formats.
# corrupt (422): an accepted format that fails to decode (bad header, truncated data).
# output-too-large (422): the encoded result is over Limits.max_output_bytes.
# encode-failed (500): the encoder refused an image we decoded; a bug or a codec limit.
ErrorKind = Literal[
    "too-large", "too-many-pixels", "unsupported-format", "corrupt", "output-too-large",
    "encode-failed",
]  # fmt: skip
KINDS: frozenset[str] = frozenset(get_args(ErrorKind))


class ImageError(Exception):
    """A source image that can't be transformed, and why.

    ``kind`` is stable (see ErrorKind); ``detail`` is for humans and logs. Both are in
    ``args``, so the error pickles across a process pool.
    """

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown image error kind {kind!r}")
        super().__init__(kind, detail)
        self.kind: ErrorKind = kind
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"
