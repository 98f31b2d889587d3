"""The request inputs that may change an answer, and the header names each is read from —
spelled once here.

A stage or shaper declares which inputs it reads (`reads`); a route's `Vary` is derived
from the union, once per config generation, so every variant of a route sends the same
complete `Vary` (RFC 9110 §12.5.5) whatever headers the request that made it happened to
carry. That is what lets a CDN in front of the edge key its copies correctly.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from images.negotiate import HINT_HEADERS

from .config import Devices

__all__ = ["ENVELOPE_HEADER", "HINT_HEADERS", "KEYMAP_HEADER", "NETWORK_HEADERS",
           "NETWORK_HINTS", "Input", "Inputs", "join_vary"]


class Input(Enum):
    FORMAT = "format"  # Accept: JSON or MessagePack, image formats
    CODING = "coding"  # Accept-Encoding: br, gzip
    DEVICE = "device"  # the device class: the devices header, User-Agent when rules use it
    NETWORK = "network"  # the network class: Save-Data, ECT, Downlink, RTT, X-Network-Type
    HINTS = "hints"  # client hints: widths and pixel ratio
    KEYMAP = "keymap"  # X-Edge-Keymap: none (or ?keymap=none)
    ENVELOPE = "envelope"  # X-Edge-Envelope (or ?envelope=)
    FIELDS = "fields"  # ?fields= only: part of the URL, so never in Vary
    # (the caller is not an input here: answers that depend on it say `private` instead)


NETWORK_HEADERS = ("Save-Data", "ECT", "Downlink", "RTT", "X-Network-Type")
# the client hints (RFC 8942) among them: asked for with Accept-CH where a route reads them
NETWORK_HINTS = ("ECT", "Downlink", "RTT")
KEYMAP_HEADER = "X-Edge-Keymap"
ENVELOPE_HEADER = "X-Edge-Envelope"

# The order headers are listed in Vary, whatever order the inputs were declared in.
_ORDER = (Input.FORMAT, Input.CODING, Input.DEVICE, Input.NETWORK, Input.HINTS,
          Input.KEYMAP, Input.ENVELOPE)


class Inputs:
    """The header names of each input for one config generation (the device header is
    configurable, and User-Agent only decides the class when there are UA rules)."""

    def __init__(self, devices: Devices) -> None:
        device = (devices.header, "User-Agent") if devices.user_agent else (devices.header,)
        self.headers: dict[Input, tuple[str, ...]] = {
            Input.FORMAT: ("Accept",), Input.CODING: ("Accept-Encoding",),
            Input.DEVICE: device, Input.NETWORK: NETWORK_HEADERS, Input.HINTS: HINT_HEADERS,
            Input.KEYMAP: (KEYMAP_HEADER,), Input.ENVELOPE: (ENVELOPE_HEADER,),
            Input.FIELDS: (),
        }

    def vary(self, reads: Iterable[Input]) -> tuple[str, ...]:
        """The Vary header names for what a route reads, in a stable order."""
        wanted = set(reads)
        return tuple(h for i in _ORDER if i in wanted for h in self.headers[i])


def join_vary(*groups: Iterable[str]) -> str:
    """One Vary value from several lists of names, each name once (case-insensitively)."""
    seen: dict[str, str] = {}
    for group in groups:
        for name in group:
            name = name.strip()
            if name and name.lower() not in seen:
                seen[name.lower()] = name
    return ", ".join(seen.values())
