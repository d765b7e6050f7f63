"""WeCom's callback crypto (企业微信 回调加解密): verify, decrypt and encrypt messages.

    key        = base64decode(EncodingAESKey + "=")          (32 bytes, AES-256)
    ciphertext = AES-CBC(key, iv=key[:16], PKCS#7 to 32-byte blocks of
                 16 random bytes + 4-byte big-endian length + message + receiveid)
    Encrypt    = base64(ciphertext)
    msg_signature = hex(sha1("".join(sorted([token, timestamp, nonce, Encrypt]))))

`receiveid` is the CorpID for an internal app; a message for another corp is refused.
The URL check (GET with `echostr`) uses the same rule, `echostr` standing for `Encrypt`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class CryptoError(ValueError):
    """The message is not signed, not ours or not readable."""


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


class WeComCrypto:
    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            raise ValueError("a WeCom EncodingAESKey has 43 characters")
        try:
            self._key = base64.b64decode(encoding_aes_key + "=")
        except binascii.Error:
            raise ValueError("the WeCom EncodingAESKey is not base64") from None
        self._token = token
        self._receive_id = receive_id

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self._token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, msg_signature.lower()):
            raise CryptoError("msg_signature does not match")

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except binascii.Error:
            raise CryptoError("the encrypted message is not base64") from None
        if not data or len(data) % 16:
            raise CryptoError("the encrypted message has a bad length")
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("the message does not decrypt with this EncodingAESKey")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise CryptoError("the decrypted message is too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if len(message) != length:
            raise CryptoError("the decrypted message is shorter than it says")
        if receive_id.decode(errors="replace") != self._receive_id:
            raise CryptoError("the message is for another receiver (CorpID)")
        try:
            return message.decode()
        except UnicodeDecodeError:
            raise CryptoError("the decrypted message is not UTF-8") from None

    def encrypt(self, message: str, random: bytes | None = None) -> str:
        body = message.encode()
        plain = (random or os.urandom(16)) + struct.pack(">I", len(body)) + body
        plain += self._receive_id.encode()
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return signature(self._token, timestamp, nonce, encrypted)
