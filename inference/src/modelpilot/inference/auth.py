"""Optional client authentication: static API keys or HS256 JWTs, keys from env or a mounted Secret file."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from modelpilot.inference.errors import UnauthorizedError
from modelpilot.inference.settings import Settings

_CLOCK_SKEW_SECONDS = 30


@dataclass(frozen=True)
class Authenticator:
    """Checks the `Authorization: Bearer …` or `X-API-Key` header; `enabled` is False when nothing is set."""

    api_keys: tuple[bytes, ...] = ()
    jwt_secret: bytes = b""
    audience: str = ""
    issuer: str = ""
    allow_no_exp: bool = False

    @property
    def enabled(self) -> bool:
        """True when keys or a JWT secret are configured."""
        return bool(self.api_keys or self.jwt_secret)

    def authenticate(self, authorization: str | None, api_key: str | None) -> str:
        """The client identity (for rate limits and logs); raises `UnauthorizedError`."""
        token = api_key
        if token is None and authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value:
                raise UnauthorizedError("expected 'Authorization: Bearer <key or token>'")
            token = value.strip()
        if not token:
            raise UnauthorizedError("credentials required")
        candidate = token.encode()
        # Compare against every key so the time taken does not say which prefix matched.
        matched = False
        for index, key in enumerate(self.api_keys):
            if hmac.compare_digest(candidate, key):
                matched = True
                identity = f"key-{index}"
        if matched:
            return identity
        if self.jwt_secret and token.count(".") == 2:
            return verify_hs256(
                token, self.jwt_secret, audience=self.audience, issuer=self.issuer, require_exp=not self.allow_no_exp
            )
        raise UnauthorizedError("unknown API key or invalid token")


def load_authenticator(settings: Settings) -> Authenticator:
    """Keys from `MODELPILOT_API_KEYS` and/or a file with one key per line; JWT secret from env or file."""
    keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    if settings.api_keys_file is not None:
        keys += [
            line.strip()
            for line in _read(settings.api_keys_file).splitlines()
            if line.strip() and not line.startswith("#")
        ]
    secret = settings.jwt_secret
    if settings.jwt_secret_file is not None:
        secret = _read(settings.jwt_secret_file).strip()
    return Authenticator(
        api_keys=tuple(k.encode() for k in keys),
        jwt_secret=secret.encode(),
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        allow_no_exp=settings.jwt_allow_no_exp,
    )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64encode(data: bytes) -> str:
    """Unpadded base64url, as JWTs use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_hs256(claims: dict[str, object], secret: bytes) -> str:
    """An HS256 JWT for `claims` (used by tests and tooling)."""
    header = b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = b64encode(orjson.dumps(claims))
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64encode(signature)}"


def verify_hs256(
    token: str,
    secret: bytes,
    *,
    audience: str = "",
    issuer: str = "",
    now: float | None = None,
    require_exp: bool = True,
) -> str:
    """Verify signature, `alg`, `exp`/`nbf`, and audience/issuer when configured; return `sub` (or "jwt").

    A token without `exp` never expires, so it is refused unless `require_exp` is off.
    """
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = orjson.loads(_b64decode(header_b64))
        claims = orjson.loads(_b64decode(payload_b64))
        signature = _b64decode(signature_b64)
    except (binascii.Error, ValueError):
        raise UnauthorizedError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise UnauthorizedError("token algorithm must be HS256")
    expected = hmac.new(secret, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise UnauthorizedError("token signature does not verify")
    if not isinstance(claims, dict):
        raise UnauthorizedError("token claims must be an object")
    moment = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    for name, value in (("exp", exp), ("nbf", nbf)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise UnauthorizedError(f"token {name} is not a number")
    if exp is None and require_exp:
        raise UnauthorizedError("token has no exp claim")
    if exp is not None and moment > exp + _CLOCK_SKEW_SECONDS:
        raise UnauthorizedError("token expired")
    if nbf is not None and moment < nbf - _CLOCK_SKEW_SECONDS:
        raise UnauthorizedError("token not valid yet")
    if audience:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences:
            raise UnauthorizedError("token audience does not match")
    if issuer and claims.get("iss") != issuer:
        raise UnauthorizedError("token issuer does not match")
    return str(claims.get("sub") or "jwt")
