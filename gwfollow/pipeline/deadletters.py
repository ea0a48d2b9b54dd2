"""Dead letters back into the pipeline (after a crash, an outage, a fixed bug)."""

from __future__ import annotations

from collections.abc import Sequence

from gwfollow.pipeline.runner import Pipeline
from gwfollow.store import Accepted


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
