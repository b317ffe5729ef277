"""Sign-in throttling: after 5 failures for a user or an address, each attempt waits 1, 2, 4 ... s (capped at
60); attempts are taken one at a time, so at most 10 failed attempts a minute get through per user; a
correct password after the wait works. A simulated clock: no test waits for real except the app one."""

from __future__ import annotations

import asyncio
import time

import pytest

from annotator.login import FREE_FAILURES, LoginThrottle, delay_after


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.waits.append(s)
        self.now += s
        await asyncio.sleep(0)


def _throttle(clock: Clock) -> LoginThrottle:
    return LoginThrottle([("ann", "right-pass"), ("bob", "bobs-pass")], clock=clock, sleep=clock.sleep)


def test_gradio_gets_a_coroutine_function_it_awaits():
    """Gradio awaits auth= only when inspect.iscoroutinefunction says so; anything else it calls, and a
    coroutine object it got back would count as a successful sign-in."""
    import inspect

    assert inspect.iscoroutinefunction(LoginThrottle([("a", "b")]).check)


def test_delays_grow_after_five_failures_and_are_capped():
    assert [delay_after(n) for n in range(12)] == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60]
    assert delay_after(50) == 60


def test_wrong_passwords_wait_and_a_right_one_after_the_wait_signs_in():
    clock = Clock()
    t = _throttle(clock)

    async def run():
        results = [await t.check("ann", f"guess-{i}", "10.0.0.9") for i in range(8)]
        assert results == [False] * 8 and clock.waits == [1, 2, 4]  # attempts 6, 7, 8
        assert await t.check("ann", "right-pass", "10.0.0.9")  # waits 8 s, then signs in
        assert clock.waits[-1] == 8
        assert await t.check("ann", "right-pass", "10.0.0.7") and clock.waits[-1] == 8  # the user's count was cleared
        assert not await t.check("bob", "nope", "10.0.0.1")  # another user from another address: no wait
        assert clock.waits[-1] == 8

    asyncio.run(run())


def test_one_address_guessing_many_users_is_throttled_too():
    clock = Clock()
    t = _throttle(clock)

    async def run():
        for i in range(FREE_FAILURES + 2):
            assert not await t.check(f"user{i}", "x", "203.0.113.5")
        assert clock.waits == [1, 2]

    asyncio.run(run())


def test_at_most_ten_failed_attempts_a_minute_even_when_fired_at_once():
    clock = Clock()
    t = _throttle(clock)
    done: list[float] = []

    async def one(i):
        assert not await t.check("ann", f"guess-{i}", "198.51.100.2")
        done.append(clock.now)

    async def run():
        await asyncio.gather(*(one(i) for i in range(500)))

    asyncio.run(run())
    start = 1000.0
    assert sum(1 for at in done if at - start < 60) <= 10
    assert len(done) == 500  # every attempt was answered (after its wait)


def test_failures_are_forgotten_after_a_quiet_quarter_hour():
    clock = Clock()
    t = _throttle(clock)

    async def run():
        for _ in range(FREE_FAILURES):
            await t.check("ann", "x", "10.1.1.1")
        clock.now += 16 * 60
        await t.check("ann", "x", "10.1.1.1")
        assert clock.waits == []

    asyncio.run(run())


@pytest.mark.slow
def test_the_app_throttles_its_login_route(tmp_path):
    import httpx

    from annotator.launch import start
    from annotator.settings import Settings

    from .support import free_port

    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0", "ANNOTATOR_AUTH": "ann:right-pass"}
                                 ).with_overrides(port=free_port())
    app = start(settings, block=False, quiet=True)
    try:
        with httpx.Client(base_url=app.url, timeout=30) as c:
            took = []
            for i in range(FREE_FAILURES + 2):
                t = time.perf_counter()
                r = c.post("/login", data={"username": "ann", "password": f"guess-{i}"})
                took.append(time.perf_counter() - t)
                assert r.status_code == 400
            assert max(took[:FREE_FAILURES]) < 1.0 and took[FREE_FAILURES] >= 1.0 and took[-1] >= 2.0, took
            # while an attempt waits (4 s now), the server keeps serving everyone else
            import threading

            slow: list = []

            def attempt():
                t0 = time.perf_counter()
                r = httpx.post(f"{app.url}/login", data={"username": "ann", "password": "x"}, timeout=30)
                slow.append((r.status_code, time.perf_counter() - t0))

            waiting = threading.Thread(target=attempt)
            waiting.start()
            time.sleep(0.3)
            t = time.perf_counter()
            assert c.get("/").status_code == 200  # the sign-in page
            assert time.perf_counter() - t < 1.0
            waiting.join()
            assert slow[0][0] == 400 and slow[0][1] >= 4.0, slow
            r = c.post("/login", data={"username": "ann", "password": "right-pass"})
            assert r.status_code == 200 and r.json() == {"success": True}
    finally:
        app.close()
