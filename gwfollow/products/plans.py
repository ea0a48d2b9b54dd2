"""Observation plans as stored products: one per configured (telescope, site)
pair and, when there are several pairs, one joint plan in which no telescope
repeats what another covers.

Executed pointings configured as coverages (``[coverages.NAME]`` with
``pointings`` and ``telescope``) are subtracted: a new sky-map revision
re-plans only what they leave.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gwfollow.config import Config
from gwfollow.errors import GwfollowError
from gwfollow.kernels import ranges as kr
from gwfollow.products.report import table_bytes
from gwfollow.targets.plan import Plan, params_from_config, plan_joint, plan_observations, plans_table
from gwfollow.targets.sites import site_from_config

JOINT = "joint"
"""Name of the joint plan over every configured pair."""


@dataclass(frozen=True)
class PlanDocument:
    """A plan serialised for the store: ``name`` is ``TELESCOPE@SITE`` or :data:`JOINT`.

    ``probability`` is the fraction of the map the plan covers; ``data`` the
    JSON table (columns, units, provenance, rows); ``error`` is set instead
    when the plan could not be made.
    """

    name: str
    data: bytes
    probability: float | None
    n_exposures: int
    provenance: dict[str, Any]
    error: str | None = None


def plan_name(telescope: str, site: str) -> str:
    """``"ZTF@Palomar"``: how a pair's plan is named in products and in ``/plan``."""
    return f"{telescope}@{site}"


def _document(name: str, plans: Sequence[Plan], fovs: Sequence[Any], sha256: str) -> PlanDocument:
    table = plans_table(plans, fovs)
    if len(plans) > 1:
        table.meta.update({"skymap_sha256": sha256, "pairs": ",".join(plan_name(p.telescope, p.site)
                                                                         for p in plans)})
    prob = float(sum(p.probability for p in plans))
    prov = {**{k: v for k, v in table.meta.items() if isinstance(v, (str, int, float))}, "plan": name,
            "probability": prob}
    return PlanDocument(name, table_bytes(table, "json"), prob, len(table), prov)


def plan_documents(skymap: Any, config: Config, start: Any, telescope_of: Callable[[Any], Any],
                   covered_before: np.ndarray | None = None) -> list[PlanDocument]:
    """Plans of every configured (telescope, site) pair, and the joint plan.

    Parameters
    ----------
    skymap : SkyMap
    config : Config
    start : astropy.time.Time
        Start of the window (the event time).
    telescope_of : callable
        ``TelescopeConfig -> Telescope`` (built once per worker by the caller).
    covered_before : (m, 2) int64, optional
        Depth-29 ranges already observed (executed pointings).

    Returns
    -------
    list of PlanDocument
        A pair that fails is recorded with its error; the others go on.
    """
    if not config.plan.enabled or not config.telescopes or not config.sites:
        return []
    out: list[PlanDocument] = []
    pairs, params = [], []
    for tc in config.telescopes:
        for sc in config.sites:
            name = plan_name(tc.name, sc.name)
            try:
                tel, site = telescope_of(tc), site_from_config(sc)
                p = params_from_config(config.plan, tc.order)
                plan = plan_observations(skymap, tel, site, start, p, covered_before=covered_before)
            except GwfollowError as exc:
                out.append(PlanDocument(name, b"{}", None, 0, {"plan": name, "error": str(exc)}, str(exc)))
                continue
            pairs.append((tel, site))
            params.append(p)
            out.append(_document(name, [plan], [tel.fov], skymap.sha256))
    if len(pairs) > 1:
        try:
            out.append(_document(JOINT, plan_joint(skymap, pairs, start, params, covered_before=covered_before),
                                 [t.fov for t, _ in pairs], skymap.sha256))
        except GwfollowError as exc:
            out.append(PlanDocument(JOINT, b"{}", None, 0, {"plan": JOINT, "error": str(exc)}, str(exc)))
    return out


def executed_ranges(coverages: Sequence[Any]) -> np.ndarray | None:
    """Union of the sky observed by executed-pointing coverages (None when there are none)."""
    parts = [c.space_ranges for c in coverages if c.kind == "spacetime" and c.space_ranges is not None]
    if not parts:
        return None
    out = parts[0]
    for r in parts[1:]:
        out = kr.union(out, r)
    return out


__all__ = ["JOINT", "PlanDocument", "executed_ranges", "plan_documents", "plan_name"]
