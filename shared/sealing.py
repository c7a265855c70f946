"""Secrets at rest: trunk passwords are sealed (Fernet: AES-128-CBC with HMAC-SHA256) with the
deployment's secret key before they reach the database or NATS KV, and unsealed only where used
(signaling answering a carrier's challenge). The api never returns them."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SealError(ValueError):
    """A sealed value could not be opened: wrong key, or tampered with."""


def _fernet(secret_key: str) -> Fernet:
    # Any operator-chosen string works as the key: it is stretched to Fernet's 32 bytes.
    digest = hashlib.sha256(b"echodesk-voice/sealing/v1\x00" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(plaintext: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(plaintext.encode()).decode()


def unseal(token: str, secret_key: str) -> str:
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SealError("cannot unseal: wrong ECHODESK_SECRET_KEY or a tampered value") from exc
