"""JWT bearer authentication as the manifest's ``security.authentication`` says.

required  every /v1 request needs a valid token
optional  no token means anonymous; a token that is present must be valid
none      no check at all (the manifest schema forbids this with encrypted data)

The algorithm is pinned from settings (never taken from the token header, so
``alg: none`` and algorithm-confusion tokens are refused), and exp, iat, aud,
iss and sub are required.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import StartupError
from .settings import Settings, env_name

REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")
# Tokens remembered as verified (a client sends the same one until it expires).
VERIFIED_CACHE_SIZE = 1024


class AuthError(Exception):
    """401: the caller could not be authenticated; ``reason`` goes to the client."""

    def __init__(self, reason: str, *, token_presented: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token_presented = token_presented


@dataclass(frozen=True)
class Principal:
    subject: str | None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.subject is None


ANONYMOUS = Principal(subject=None)


class TokenVerifier:
    def __init__(
        self, key: bytes, *, algorithm: str, audience: str, issuer: str, leeway: float = 0
    ) -> None:
        self._key = key
        self._algorithm = algorithm
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        # token -> (expiry, principal). A token that verified once verifies again,
        # with the same claims, until its exp: the key and the rules are fixed for
        # the process. Skipping the HMAC and the JSON for it is most of a
        # request's authentication cost. Only successes are kept; bounded, oldest out.
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[0]:
                return known[1]
            del self._verified[token]  # expired: decode again for the exact error
        principal = self._decode(token)
        try:
            expiry = float(principal.claims["exp"]) + self._leeway
        except OverflowError:  # a validly signed exp past any float: keep it out of the cache
            return principal
        self._verified[token] = (expiry, principal)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(
                "the token is not valid yet (iat or nbf in the future: check the issuer's clock)"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthError("the token is not meant for this module (audience)") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the token was not issued by the expected issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the token lacks the {exc.claim} claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(f"the token must be signed with {self._algorithm}") from None
        except jwt.InvalidTokenError:
            raise AuthError("the token is malformed or its signature is invalid") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("the token's sub claim must be a non-empty string")
        # An org_id that is not a string must not read as "no organisation": that
        # would let the token name any organisation's data.
        org = claims.get("org_id")
        if org is not None and (not isinstance(org, str) or not org):
            raise AuthError("the token's org_id claim must be a non-empty string")
        return Principal(subject=subject, claims=claims)


class Authenticator:
    def __init__(self, mode: str, verifier: TokenVerifier | None) -> None:
        if mode not in ("required", "optional", "none"):
            raise ValueError(f"unknown authentication mode {mode!r}")
        self.mode = mode
        self._verifier = verifier

    def authenticate(self, authorization: str | None) -> Principal:
        """Principal for an ``Authorization`` header value, or AuthError."""
        if self.mode == "none":
            return ANONYMOUS
        if not authorization:
            if self.mode == "optional":
                return ANONYMOUS
            raise AuthError("a bearer token is required", token_presented=False)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("expected an 'Authorization: Bearer <token>' header")
        if self._verifier is None:
            raise AuthError("this module has no JWT secret configured and cannot verify tokens")
        return self._verifier.verify(token.strip())


def verifier_from_settings(settings: Settings) -> TokenVerifier | None:
    key = settings.jwt_key()
    if key is None:
        return None
    return TokenVerifier(
        key,
        algorithm=settings.jwt_algorithm,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def build_authenticator(mode: str, settings: Settings) -> Authenticator:
    """Refuses (StartupError) to build a 'required' authenticator without a secret."""
    verifier = verifier_from_settings(settings)
    if mode == "required" and verifier is None:
        raise StartupError(
            "the manifest requires authentication but no JWT secret is configured: "
            f"set {env_name('jwt_secret')} or {env_name('jwt_secret_file')}"
        )
    return Authenticator(mode, verifier)


def issue_token(
    key: bytes,
    *,
    subject: str,
    audience: str,
    issuer: str,
    algorithm: str = "HS256",
    ttl_seconds: int = 3600,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = dict(extra_claims or {})
    claims.update(sub=subject, aud=audience, iss=issuer, iat=issued, exp=issued + ttl_seconds)
    return jwt.encode(claims, key, algorithm=algorithm)


def issue_token_from_settings(
    settings: Settings, subject: str, ttl_seconds: int = 3600, *, org: str | None = None
) -> str:
    key = settings.jwt_key()
    if key is None:
        raise StartupError(
            f"no JWT secret configured: set {env_name('jwt_secret')} or "
            f"{env_name('jwt_secret_file')}"
        )
    return issue_token(
        key,
        subject=subject,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        algorithm=settings.jwt_algorithm,
        ttl_seconds=ttl_seconds,
        extra_claims=None if org is None else {"org_id": org},
    )
