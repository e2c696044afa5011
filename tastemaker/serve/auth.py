"""API keys with scopes, and per-key rate limits (token buckets)."""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from tastemaker.serve.settings import ApiKey, Settings, hash_secret

ALL_SCOPES = frozenset({"read", "write", "admin"})


@dataclass
class Principal:
    """Who is calling: the key's name and scopes ("anonymous" with every scope when open)."""

    name: str
    scopes: frozenset[str]


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class Authenticator:
    """Checks ``Authorization: Bearer <secret>`` (or ``X-API-Key``) against hashed keys."""

    def __init__(self, settings: Settings) -> None:
        self.keys: list[ApiKey] = list(settings.api_keys)
        self.buckets = {k.name: TokenBucket(k.rate_per_second, k.burst) for k in self.keys}

    @property
    def open(self) -> bool:
        return not self.keys

    def authenticate(self, secret: str | None, scope: str) -> Principal:
        if self.open:
            return Principal("anonymous", ALL_SCOPES)
        if not secret:
            raise AuthError(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        digest = hash_secret(secret)
        key = next((k for k in self.keys if hmac.compare_digest(k.sha256, digest)), None)
        if key is None:
            raise AuthError(401, "invalid API key")
        if scope not in key.scopes:
            raise AuthError(403, f"API key '{key.name}' lacks the '{scope}' scope (it has: {', '.join(key.scopes)})")
        if not self.buckets[key.name].take():
            raise AuthError(429, f"rate limit exceeded for API key '{key.name}' ({key.rate_per_second:g}/s)")
        return Principal(key.name, frozenset(key.scopes))
