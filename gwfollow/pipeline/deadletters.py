"""Dead letters back into the pipeline (after a crash, an outage, a fixed bug)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gwfollow.pipeline.runner import Pipeline
from gwfollow.store import Accepted

log = logging.getLogger("gwfollow.pipeline.deadletters")


async def requeue_dead(pipe: Pipeline, dead_letter_ids: Sequence[int] | None = None,
                       transient_only: bool = False) -> list[int]:
    """Make dead messages pending again and queue them; returns their raw ids.

    Parameters
    ----------
    pipe : Pipeline
        A started pipeline.
    dead_letter_ids : sequence of int, optional
        Which dead letters (all open ones when None).
    transient_only : bool
        Only those marked transient.
    """
    raw_ids = await pipe.db(pipe.store.requeue, dead_letter_ids, transient_only)
    for raw_id in raw_ids:
        await pipe.enqueue(Accepted(raw_id, True, "pending"))
    return raw_ids


async def watch_requeued(pipe: Pipeline, interval_s: float) -> None:
    """Every ``interval_s`` s, queue what was requeued on the database from outside the service
    (``gwfollow deadletters requeue``), so a running service needs no restart.  Runs until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            ids = await pipe.enqueue_requeued()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 -- a failed look (database busy) is tried again next time
            log.exception("cannot look for requeued messages")
            continue
        if ids:
            log.info("processing %d requeued message(s): raw %s", len(ids), ", ".join(map(str, ids)))
