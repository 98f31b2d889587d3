"""Image transformation for the edge: pure functions, bytes and header strings in and out.

No HTTP here: the edge does the I/O and runs ``transform`` in a worker pool, so everything
is plain functions and frozen dataclasses that pickle.
"""

from __future__ import annotations

from images.errors import ErrorKind, ImageError
from images.formats import CONTENT_TYPES, OUTPUT_FORMATS, SOURCE_FORMATS, encodable, sniff
from images.negotiate import choose_format, client_width, dpr, save_data, snap_width
from images.signing import canonical, sign, signature_of, signed_url, verify
from images.transform import (
    DEFAULT_QUALITY,
    Limits,
    Master,
    Result,
    Spec,
    decode_master,
    render,
    transform,
)

__all__ = [
    "CONTENT_TYPES", "DEFAULT_QUALITY", "OUTPUT_FORMATS", "SOURCE_FORMATS", "ErrorKind",
    "ImageError", "Limits", "Master", "Result", "Spec", "canonical", "choose_format",
    "client_width", "decode_master", "dpr", "encodable", "render", "save_data", "sign",
    "signature_of", "signed_url", "snap_width", "sniff", "transform", "verify",
]  # fmt: skip
