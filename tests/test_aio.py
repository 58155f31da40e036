"""bridge.aio.cancelled_from_outside tells a task's own cancellation from a CancelledError a library raised."""

from __future__ import annotations

import asyncio

from bridge.aio import cancelled_from_outside


async def test_a_library_cancelled_error_is_not_a_cancellation_of_the_task_but_a_real_cancel_is() -> None:
    """Inside a task that was not cancelled the answer is False (unless stopping); after task.cancel() it is True."""
    seen: list[bool] = []
    started = asyncio.Event()

    async def worker() -> None:
        try:
            inner = asyncio.get_running_loop().create_future()
            inner.cancel()  # what a client library does to one of its own requests
            await inner
        except asyncio.CancelledError:
            seen.extend([cancelled_from_outside(), cancelled_from_outside(stopping=True)])
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append(cancelled_from_outside())
            raise

    task = asyncio.create_task(worker())
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == [False, True, True]
