"""Sign-in for the Gradio app: the configured users' passwords, checked with a throttle.

Passwords are checked by ``users.Users.verify``: the stored scrypt hash (or a plain ``ANNOTATOR_AUTH``
password) compared in constant time, and a dummy hash computed for an unknown name, so the answer's timing
does not tell which names exist. The hash runs in a thread: the server keeps serving while it does.

Gradio calls ``LoginThrottle.check`` (its ``auth=`` callable: a coroutine FUNCTION, which Gradio awaits on
the server's event loop; an object with an async ``__call__`` would not be awaited, and the coroutine it
returned would count as a yes) with the typed name and password. After ``FREE_FAILURES`` failed sign-ins for a user name, or from one client address, each
further attempt for it waits 1 s, 2 s, 4 s ... (at most ``MAX_DELAY_S``) before its password is even
compared, and is logged; attempts for one user or address are taken one at a time, so firing many at once
buys nothing. A correct password after the wait signs in and clears that user's count. Failures are
forgotten after ``FORGET_S`` quiet seconds. Waiting is ``asyncio.sleep``: the server keeps serving others.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Awaitable, Callable, Sequence

from .users import User, Users, UsersFile

log = logging.getLogger("annotator.login")

FREE_FAILURES = 5
MAX_DELAY_S = 60.0
FORGET_S = 15 * 60.0


def delay_after(failures: int) -> float:
    """Seconds an attempt waits after ``failures`` failed ones: 0 for the first FREE_FAILURES, then 1, 2, 4 ..."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY_S, 2.0 ** (failures - FREE_FAILURES))


def _client_address() -> str | None:
    """The client address of the sign-in request being served: Gradio's login route awaits us with its
    ``request`` in scope (read before our first await, while its frame is our caller's)."""
    frame = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            return None
        req = frame.f_locals.get("request")
        client = getattr(req, "client", None)
        if client is not None:
            return getattr(client, "host", None)
        frame = frame.f_back
    return None


class LoginThrottle:
    """The users (a ``Users``, or plain (user, password) pairs) with the throttle the module doc describes;
    ``check`` is Gradio's ``auth=``."""

    def __init__(self, users: Users | UsersFile | Sequence[tuple[str, str]], *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable] = asyncio.sleep):
        if not isinstance(users, (Users, UsersFile)):
            users = Users(User(u, "admin", plain=p, origin="login") for u, p in users)
        self.users = users
        self._clock = clock
        self._sleep = sleep
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # key -> (count, last failure)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def failures(self, key: tuple[str, str]) -> int:
        count, last = self._failures.get(key, (0, 0.0))
        return 0 if self._clock() - last > FORGET_S else count

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        if len(self._locks) > 10_000:  # many distinct names or addresses: drop the idle ones
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault(key, asyncio.Lock())

    async def check(self, username: str, password: str, address: str | None = None) -> bool:
        address = address if address is not None else _client_address()
        keys = [("user", (username or "").casefold())] + ([("address", address)] if address else [])
        async with self._lock(keys[0]):
            if len(keys) > 1:
                async with self._lock(keys[1]):
                    return await self._attempt(username, password, keys)
            return await self._attempt(username, password, keys)

    async def _attempt(self, username: str, password: str, keys: list[tuple[str, str]]) -> bool:
        wait = max(delay_after(self.failures(k)) for k in keys)
        if wait:
            log.warning("sign-in for %r from %s: %d failed attempt(s) before, waiting %.0f s", username,
                        dict(keys).get("address", "?"), max(self.failures(k) for k in keys), wait)
            await self._sleep(wait)
        # Hashed whether or not the name exists: the answer's timing does not tell which names do.
        ok = await asyncio.to_thread(self.users.current().verify, username or "", password or "")
        if ok:
            self._failures.pop(keys[0], None)
            return True
        now = self._clock()
        for k in keys:
            self._failures[k] = (self.failures(k) + 1, now)
        log.warning("failed sign-in for %r from %s", username, dict(keys).get("address", "?"))
        return False


__all__ = ["LoginThrottle", "delay_after", "FREE_FAILURES", "MAX_DELAY_S"]
