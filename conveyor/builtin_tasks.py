"""Built-in tasks, so a fresh install is useful and testable with no code of one's own.

``math.*`` are CPU-bound (``def``: they run on the process pool) and give exact integer
results for integer inputs; invalid domains raise :class:`conveyor.Fail` (permanent).
``sys.*`` exercise the machinery: no-op, sleep, busy CPU, and controlled failure.
"""

from __future__ import annotations

import asyncio
import math
import time

from .errors import Fail
from .tasks import Context, task

Number = int | float

MAX_FACTORIAL_N = 20_000
MAX_FIBONACCI_N = 100_000
MAX_PRIMES_N = 50_000_000
MAX_RESULT_BITS = 1_000_000


def _check_result(value: int | float) -> int | float:
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise Fail(f"result too large: more than {MAX_RESULT_BITS} bits")
    return value


@task(name="math.add")
def add(a: Number, b: Number) -> Number:
    """a + b."""
    return a + b


@task(name="math.sub")
def sub(a: Number, b: Number) -> Number:
    """a - b."""
    return a - b


@task(name="math.mul")
def mul(a: Number, b: Number) -> Number:
    """a * b."""
    return _check_result(a * b)


@task(name="math.div", permanent=(ZeroDivisionError,))
def div(a: Number, b: Number) -> Number:
    """a / b: exact (an integer) when both are integers and b divides a."""
    if b == 0:
        raise ZeroDivisionError("division by zero: b must not be 0")
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return a / b


@task(name="math.pow")
def power(base: Number, exp: Number) -> Number:
    """base ** exp; integer results stay exact (bounded to a million bits)."""
    if isinstance(base, int) and isinstance(exp, int) and exp >= 0:
        if base not in (0, 1, -1) and exp * max(1, abs(base).bit_length()) > MAX_RESULT_BITS:
            raise Fail(f"result too large: more than {MAX_RESULT_BITS} bits")
        exact: int = base**exp
        return exact
    if base == 0 and exp < 0:
        raise Fail("invalid domain: 0 cannot be raised to a negative power")
    try:
        result: float | complex = float(base) ** float(exp)
    except OverflowError as exc:
        raise Fail("result too large for a float") from exc
    if isinstance(result, complex):
        raise Fail("invalid domain: a negative base needs an integer exponent")
    return result


@task(name="math.sqrt")
def sqrt(x: Number) -> Number:
    """The square root; exact for perfect squares of integers."""
    if x < 0:
        raise Fail(f"invalid domain: sqrt of a negative number ({x})")
    if isinstance(x, int):
        root = math.isqrt(x)
        if root * root == x:
            return root
    return math.sqrt(x)


@task(name="math.factorial")
def factorial(n: int) -> int:
    """n! for 0 <= n <= 20000."""
    if n < 0 or n > MAX_FACTORIAL_N:
        raise Fail(f"invalid domain: n must be in [0, {MAX_FACTORIAL_N}], got {n}")
    return math.factorial(n)


@task(name="math.fibonacci")
def fibonacci(n: int) -> int:
    """The n-th Fibonacci number (F0 = 0, F1 = 1), exact, for 0 <= n <= 100000."""
    if n < 0 or n > MAX_FIBONACCI_N:
        raise Fail(f"invalid domain: n must be in [0, {MAX_FIBONACCI_N}], got {n}")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@task(name="math.count_primes")
def count_primes(n: int) -> int:
    """How many primes are <= n (sieve of Eratosthenes), for 0 <= n <= 50,000,000."""
    if n < 0 or n > MAX_PRIMES_N:
        raise Fail(f"invalid domain: n must be in [0, {MAX_PRIMES_N}], got {n}")
    if n < 2:
        return 0
    sieve = bytearray([1]) * (n + 1)
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(n) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n + 1, i)))
    return sum(sieve)


@task(name="sys.noop")
async def noop() -> None:
    """Does nothing, at once (runs on the event loop)."""
    return None


@task(name="sys.sleep")
async def sleep(seconds: float = 1.0) -> float:
    """Sleeps ``seconds`` on the event loop (I/O-bound stand-in); returns the seconds."""
    if seconds < 0 or seconds > 3600:
        raise Fail("seconds must be in [0, 3600]")
    await asyncio.sleep(seconds)
    return seconds


@task(name="sys.cpu")
def cpu(ms: float = 10.0) -> float:
    """Busy-loops for ``ms`` milliseconds of CPU time on the process pool."""
    if ms < 0 or ms > 3_600_000:
        raise Fail("ms must be in [0, 3600000]")
    deadline = time.thread_time() + ms / 1000.0
    while time.thread_time() < deadline:
        pass
    return ms


@task(name="sys.fail", max_attempts=3)
async def fail(ctx: Context, times: int | None = None) -> int:
    """Fails the first ``times`` attempts and then succeeds; always fails when omitted."""
    if times is None or ctx.attempt <= times:
        raise RuntimeError(f"sys.fail: attempt {ctx.attempt} fails as asked")
    return ctx.attempt
