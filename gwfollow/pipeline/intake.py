"""Intake that answers at once whether a pushed message is usable (HTTP POST).

The message is parsed before it is queued, in a worker process (not a
thread of the service's process, whose GIL the event loop needs): one that is
not a valid alert (bad JSON, wrong schema, an identifier that is not a
GraceDB id) is still stored byte for byte and dead-lettered with the reason,
and the sender learns the reason now rather than finding a dead letter later.
Bare FITS sky maps are decoded by the workers as before (decoding a sky map
is too heavy for the service process).
"""

from __future__ import annotations

from gwfollow.errors import AlertError
from gwfollow.ingest.parse import sniff
from gwfollow.pipeline.runner import Pipeline
from gwfollow.store import Accepted


class RejectedAlert(AlertError):
    """A message refused at intake; it is stored as dead letter ``raw_id``."""

    def __init__(self, cause: AlertError, raw_id: int) -> None:
        super().__init__(cause.reason, source=cause.source, hint=cause.hint)
        self.raw_id = raw_id


async def submit_checked(pipe: Pipeline, body: bytes, source: str) -> Accepted:
    """Parse ``body``; queue it when it is an alert, else keep it as a dead letter.

    Raises
    ------
    RejectedAlert
        The message is not a usable alert; ``raw_id`` names the stored copy.
    """
    if sniff(body) != "fits":
        try:
            await pipe.check(body, source)
        except AlertError as exc:
            acc = await pipe.accept(body, source)
            if acc.new:
                await pipe.db(pipe.store.dead_letter, acc.raw_id, source, exc)
            raise RejectedAlert(exc, acc.raw_id) from None
    return await pipe.submit(body, source)
