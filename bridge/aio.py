"""asyncio helpers shared by the pipeline, the daemon and the connectors."""

from __future__ import annotations

import asyncio


def cancelled_from_outside(stopping: bool = False) -> bool:
    """True when the running task itself is being cancelled (or the caller is stopping).

    False means a ``CancelledError`` was raised by a library from a future it cancelled internally (seen with
    client libraries during reconnects): the caller should treat it as an ordinary failure and retry, not
    let a background task end silently.
    """
    task = asyncio.current_task()
    return stopping or task is None or task.cancelling() > 0


def reraise_if_cancelled(exc: BaseException, stopping: bool = False) -> None:
    """Re-raise ``exc`` if it is a real cancellation of the running task (see ``cancelled_from_outside``);
    for use in ``except (asyncio.CancelledError, Exception)`` blocks that retry everything else."""
    if isinstance(exc, asyncio.CancelledError) and cancelled_from_outside(stopping):
        raise exc


def completed() -> asyncio.Future[None]:
    """A future that is already done (for an awaitable with nothing to wait for)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut
