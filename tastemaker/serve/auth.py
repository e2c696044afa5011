"""API keys with scopes, per-key rate limits, and a throttle on failed authentication.

Every limit is a token bucket. A refusal for a limit is a :class:`AuthError` with status 429
and ``retry_after``: the whole seconds until a token is back (the ``Retry-After`` header).
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from tastemaker.serve.settings import ApiKey, Settings, hash_secret

ALL_SCOPES = frozenset({"read", "write", "admin"})


@dataclass
class Principal:
    """Who is calling: the key's name and scopes ("anonymous" with every scope when open)."""

    name: str
    scopes: frozenset[str]


class AuthError(Exception):
    """A refused request: ``status`` is 401 (no or unknown key), 403 (scope) or 429 (a limit,
    with ``retry_after`` seconds)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """Take a token if one is there."""
        with self.lock:
            self._refill()
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False

    def empty(self) -> bool:
        """True when a :meth:`take` now would fail (takes nothing)."""
        with self.lock:
            self._refill()
            return self.tokens < 1.0

    def retry_after(self) -> int:
        """Whole seconds until a token is back (at least 1: ``Retry-After`` counts in seconds)."""
        with self.lock:
            self._refill()
            return max(1, math.ceil((1.0 - self.tokens) / self.rate))


class FailureThrottle:
    """One bucket of failed authentication attempts per client address.

    Only ``max_clients`` addresses are remembered (the least recently seen are forgotten),
    so a flood of spoofed addresses cannot grow memory without bound."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def _bucket(self, client: str) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = TokenBucket(self.rate, self.burst)
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
            return bucket

    def check(self, client: str) -> None:
        """Refuse (429) a client whose failures used up its budget, before looking at its key:
        a throttled client cannot go on guessing, and guesses cost no hashing."""
        bucket = self._bucket(client)
        if bucket.empty():
            raise AuthError(429, "too many failed authentication attempts from this address", bucket.retry_after())

    def failed(self, client: str) -> None:
        self._bucket(client).take()


class Authenticator:
    """Checks ``Authorization: Bearer <secret>`` (or ``X-API-Key``) against hashed keys."""

    def __init__(self, settings: Settings) -> None:
        self.keys: list[ApiKey] = list(settings.api_keys)
        self.buckets = {k.name: TokenBucket(k.rate_per_second, k.burst) for k in self.keys}
        self.failures = FailureThrottle(settings.auth_failures_per_second, settings.auth_failure_burst)

    @property
    def open(self) -> bool:
        return not self.keys

    def authenticate(self, secret: str | None, scope: str, client: str | None = None) -> Principal:
        """The caller of a route that needs ``scope``; raises :class:`AuthError`.

        ``client`` (the peer address) throttles failed attempts: past
        ``auth_failure_burst`` failures (refilled at ``auth_failures_per_second``) every
        request from that address is a 429, whatever key it carries, until a token is back."""
        if self.open:
            return Principal("anonymous", ALL_SCOPES)
        address = client or "unknown"
        self.failures.check(address)
        if not secret:
            self.failures.failed(address)
            raise AuthError(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        digest = hash_secret(secret)
        key = next((k for k in self.keys if hmac.compare_digest(k.sha256, digest)), None)
        if key is None:
            self.failures.failed(address)
            raise AuthError(401, "invalid API key")
        if scope not in key.scopes:
            raise AuthError(403, f"API key '{key.name}' lacks the '{scope}' scope (it has: {', '.join(key.scopes)})")
        bucket = self.buckets[key.name]
        if not bucket.take():
            raise AuthError(429, f"rate limit exceeded for API key '{key.name}' ({key.rate_per_second:g}/s)",
                            bucket.retry_after())
        return Principal(key.name, frozenset(key.scopes))


def secret_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return x_api_key
