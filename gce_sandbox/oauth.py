"""OAuth 2.0 token endpoint (https://oauth2.googleapis.com/token) for the JWT-bearer grant
that service-account credentials (google-auth) use, checked against the sandbox's own key.

Refusals as Google's token endpoint words them: 400 {"error": "invalid_grant",
"error_description": "Invalid JWT Signature."} for a bad signature, "Invalid JWT: Token must
be a short-lived token (60 minutes) and in a reasonable timeframe..." for bad times,
"invalid_grant" / "Invalid grant: account not found" for an unknown issuer.
"""

from __future__ import annotations

import base64
import json
import os
import time
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class TokenEndpoint:
    def __init__(self, state: dict, service_account: dict):
        self.state = state
        self.sa = service_account   # the key file's JSON

    def _public_key(self):
        key = serialization.load_pem_private_key(self.sa["private_key"].encode(), None)
        return key.public_key()

    def handle(self, body: bytes) -> tuple[int, dict]:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if grant != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant or ''}"}
        assertion = form.get("assertion", "")
        parts = assertion.split(".")
        if len(parts) != 3:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Malformed."}
        try:
            header = json.loads(_b64d(parts[0]))
            claims = json.loads(_b64d(parts[1]))
            signature = _b64d(parts[2])
        except (ValueError, json.JSONDecodeError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Malformed."}
        if header.get("alg") != "RS256":
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Unsupported algorithm."}
        if claims.get("iss") != self.sa["client_email"]:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        if header.get("kid") and header["kid"] != self.sa["private_key_id"]:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        try:
            self._public_key().verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(),
                                      hashes.SHA256())
        except InvalidSignature:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        now = time.time()
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if not (iat - 300 <= now <= exp + 300) or exp - iat > 3600:
            return 400, {"error": "invalid_grant", "error_description":
                         "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                         "timeframe. Check your iat and exp values in the JWT claim."}
        if claims.get("aud") != self.sa["token_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Failed audience check."}
        token = "ya29.sandbox-sa-" + os.urandom(24).hex()
        tokens = self.state.setdefault("issued_tokens", {})
        tokens[token] = now + 3600
        for t, until in list(tokens.items()):
            if until < now:
                del tokens[t]
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
