"""Secrets scopegate must read back later (not just compare), sealed at rest.

The deploy hook keeps its webhook secrets and its own tokens: it must sign-check with
the one and present the other, so a hash will not do. Each is sealed with AES-256-GCM
under a key derived (HKDF) from the server secret for this one purpose, with associated
data naming the row it belongs to: a blob copied onto another row does not open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scopegate.services.keys import derived_key

PURPOSE = b"scopegate deploy hook secrets v1"
NONCE_BYTES = 12


class SealBroken(Exception):
    """A sealed blob that does not open: another server secret, another row, or altered."""


class Sealer:
    """Seals and opens secrets bound to a label (``"installation:<id>"``, ...)."""

    def __init__(self, server_secret: str) -> None:
        self._aead = AESGCM(derived_key(server_secret, PURPOSE))

    def seal(self, label: str, secret: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), label.encode())

    def open(self, label: str, sealed: bytes) -> str:
        try:
            plain = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                       label.encode())
        except (InvalidTag, ValueError):
            raise SealBroken(label) from None
        return plain.decode()
