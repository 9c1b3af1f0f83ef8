"""Login throttling, counted in Redis so that every API replica sees the same counts.

Two fixed-window counters, both checked before any password is hashed:

- per client address: every login attempt counts (``BATON_LOGIN_IP_ATTEMPTS`` a window);
- per account (the email as typed, lower-cased; unknown emails count the same, so the answer
  never tells whether an account exists): an attempt counts from the moment it is admitted
  and only a successful login clears the count (``BATON_LOGIN_ACCOUNT_FAILURES`` a window).
  Counting attempts still in flight is what turns away the 6th of 20 simultaneous guesses
  before its hash starts, instead of after all 20 have been hashed.

Past either limit the answer is 429 with ``Retry-After`` (what is left of the window). When
Redis cannot be reached, logins go on unthrottled (logged): the argon2 limit still bounds
the work, and people can still log in during a Redis outage.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from orchestrator.dispatch.queue import PREFIX
from orchestrator.errors import TooManyRequests
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

# Every key login throttling uses; each expires with its window.
IP_KEY = PREFIX + "login:ip:"
ACCOUNT_KEY = PREFIX + "login:account:"


def ip_key(address: str) -> str:
    return IP_KEY + address


def account_key(email: str) -> str:
    """``email`` as accounts.normalize_email leaves it; hashed: no addresses in Redis, and a
    bounded key length whatever was typed."""
    return ACCOUNT_KEY + hashlib.sha256(email.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LoginThrottle:
    redis: Redis
    window_seconds: int
    account_failures: int
    ip_attempts: int

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> LoginThrottle:
        return cls(
            redis=redis,
            window_seconds=settings.login_window_seconds,
            account_failures=settings.login_account_failures,
            ip_attempts=settings.login_ip_attempts,
        )

    def admit(self, *, address: str, email: str) -> None:
        """Count this attempt; raise TooManyRequests if its address or account is over."""
        try:
            self._count(ip_key(address), self.ip_attempts, "from your address")
            self._count(account_key(email), self.account_failures, "for this account")
        except RedisError as exc:
            log.warning("login throttling skipped: Redis unavailable (%s)", exc)

    def succeeded(self, email: str) -> None:
        """A correct password: the account's count starts again."""
        try:
            self.redis.delete(account_key(email))
        except RedisError as exc:
            log.warning("could not clear the login count: Redis unavailable (%s)", exc)

    def _count(self, key: str, limit: int, whose: str) -> None:
        pipe = self.redis.pipeline(transaction=True)  # MULTI: the window starts with the count
        pipe.set(key, 0, ex=self.window_seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
        if int(count) > limit:
            retry_after = max(int(ttl), 1)
            raise TooManyRequests(
                f"too many login attempts {whose}: try again in {retry_after} s",
                retry_after=retry_after,
            )
