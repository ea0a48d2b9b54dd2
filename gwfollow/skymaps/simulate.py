"""A documented sky-map simulation: the embedded default of ``make demo``.

It needs no network and no file: a compact-binary localisation is modelled
as a mixture of von Mises-Fisher distributions on the sphere (the
two-lobed arcs of two- and three-detector networks are approximated by a
chain of components along a great circle), and the distance by the
ansatz of Singer et al. 2016 (ApJL 829, L15) with a posterior mean and
standard deviation that vary slowly across the region.  The multi-order
mesh is refined adaptively as BAYESTAR does (Singer & Price 2016, PRD 93,
024013, section V): starting from order 4, the cells that hold the most
probability are split until the deepest order is reached.  The file is
written with ligo.skymap's FITS writer, so it carries the same header
cards as an LVK map.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tempfile
from pathlib import Path

import healpy as hp
import numpy as np
from astropy.table import Table

DEFAULT_OBJECT_ID = "MS000000sim"


def _vmf_density(ra: np.ndarray, dec: np.ndarray, comps: list[tuple[float, float, float, float]]) -> np.ndarray:
    x = np.cos(dec) * np.cos(ra)
    y = np.cos(dec) * np.sin(ra)
    z = np.sin(dec)
    out = np.zeros_like(ra)
    for w, ra0, dec0, kappa in comps:
        mx, my, mz = math.cos(dec0) * math.cos(ra0), math.cos(dec0) * math.sin(ra0), math.sin(dec0)
        # Normalised vMF on the sphere: kappa / (4 pi sinh kappa) exp(kappa mu.x),
        # written with exp(kappa (mu.x - 1)) to avoid overflow.
        c = kappa / (2 * math.pi * (1 - math.exp(-2 * kappa)))
        out += w * c * np.exp(kappa * (mx * x + my * y + mz * z - 1.0))
    return out


def simulated_skymap_table(
    seed: int = 0,
    *,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    size_deg: float = 3.0,
    distance_mpc: float = 150.0,
    max_order: int = 11,
    n_components: int = 3,
):
    """Simulate a multi-order sky map as an astropy Table (ligo.skymap layout).

    Parameters
    ----------
    seed : int
        Random seed: the same seed gives the same map.
    ra_deg, dec_deg : float, optional
        Centre of the localisation, degrees; drawn at random when omitted.
    size_deg : float
        Angular size (standard deviation) of each component, degrees.
    distance_mpc : float
        Posterior mean luminosity distance at the centre, Mpc.
    max_order : int
        Deepest order of the adaptive mesh (BAYESTAR uses 11 at most).
    n_components : int
        Components along the arc.

    Returns
    -------
    astropy.table.Table
        Columns UNIQ, PROBDENSITY (sr^-1), DISTMU, DISTSIGMA (Mpc),
        DISTNORM (Mpc^-2) and the metadata ligo.skymap writes.
    """
    # ligo.skymap is heavy (seconds to import) and needed only here.
    from ligo.skymap.distance import moments_to_parameters

    rng = np.random.default_rng(seed)
    ra0 = math.radians(ra_deg) if ra_deg is not None else rng.uniform(0, 2 * math.pi)
    dec0 = math.radians(dec_deg) if dec_deg is not None else math.asin(rng.uniform(-0.9, 0.9))
    pa = rng.uniform(0, math.pi)
    kappa = 1.0 / math.radians(size_deg) ** 2
    comps = []
    for j in range(n_components):
        off = math.radians(size_deg) * 2.0 * (j - (n_components - 1) / 2)
        dra = off * math.cos(pa) / max(math.cos(dec0), 0.2)
        ddec = off * math.sin(pa)
        comps.append((rng.uniform(0.5, 1.5), ra0 + dra, float(np.clip(dec0 + ddec, -1.5, 1.5)), kappa))
    wsum = sum(c[0] for c in comps)
    comps = [(w / wsum, a, d, k) for w, a, d, k in comps]

    order = 4
    cells_o = np.full(12 * 4**order, order, dtype=np.int64)
    cells_p = np.arange(12 * 4**order, dtype=np.int64)

    def evaluate(cells_o: np.ndarray, cells_p: np.ndarray):
        theta, phi = hp.pix2ang(2**cells_o, cells_p, nest=True)
        dens = _vmf_density(phi, 0.5 * np.pi - theta, comps)
        return theta, phi, dens, dens * 4 * np.pi / (12 * 4.0**cells_o)

    for _ in range(max_order - order):
        theta, phi, dens, prob = evaluate(cells_o, cells_p)
        # BAYESTAR's refinement: split the quarter of the base cells (768)
        # that hold the most probability; 7 passes from order 4 give 19,200 rows.
        idx = np.argsort(-prob, kind="stable")
        top = idx[: 12 * 4**order // 4]
        top = top[cells_o[top] < max_order]
        keep = np.ones(cells_o.size, bool)
        keep[top] = False
        new_o = np.repeat(cells_o[top] + 1, 4)
        new_p = (cells_p[top][:, None] * 4 + np.arange(4)).ravel()
        cells_o = np.concatenate([cells_o[keep], new_o])
        cells_p = np.concatenate([cells_p[keep], new_p])
    theta, phi, dens, prob = evaluate(cells_o, cells_p)
    uniq = 4 * 4**cells_o + cells_p
    srt = np.argsort(uniq)
    uniq, dens, prob, theta, phi = uniq[srt], dens[srt], prob[srt], theta[srt], phi[srt]
    dens = dens / prob.sum()
    # Distance: mean grows slowly with angular offset, 30% relative width.
    off = np.arccos(np.clip(np.sin(dec0) * np.cos(theta) + np.cos(dec0) * np.sin(theta) * np.cos(phi - ra0), -1, 1))
    mean = distance_mpc * (1.0 + 0.5 * off)
    std = 0.3 * mean
    mu, sigma, norm = moments_to_parameters(mean, std)
    t = Table(
        {"UNIQ": uniq, "PROBDENSITY": dens, "DISTMU": mu, "DISTSIGMA": sigma, "DISTNORM": norm}
    )
    t["PROBDENSITY"].unit = "sr-1"
    t["DISTMU"].unit = "Mpc"
    t["DISTSIGMA"].unit = "Mpc"
    t["DISTNORM"].unit = "Mpc-2"
    t.meta.update(
        objid=DEFAULT_OBJECT_ID,
        gps_time=1_400_000_000.0 + seed,
        instruments={"H1", "L1", "V1"},
        creator="gwfollow.skymaps.simulate",
        origin="gwfollow",
        distmean=float(distance_mpc),
        diststd=float(0.3 * distance_mpc),
    )
    return t


def write_simulated_skymap(path: str | os.PathLike[str], seed: int = 0, **kwargs) -> Path:
    """Write :func:`simulated_skymap_table` as an LVK multi-order FITS file."""
    # ligo.skymap is heavy (seconds to import) and needed only here.
    from ligo.skymap.io.fits import write_sky_map

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_sky_map(str(p), simulated_skymap_table(seed, **kwargs), moc=True)
    return p


def simulated_skymap_bytes(seed: int = 0, **kwargs) -> bytes:
    """The bytes of :func:`write_simulated_skymap` (as an alert would carry them)."""
    with tempfile.TemporaryDirectory() as d:
        p = write_simulated_skymap(Path(d) / "sim.multiorder.fits", seed, **kwargs)
        return p.read_bytes()


def simulated_alert_json(skymap: bytes, *, superevent_id: str = DEFAULT_OBJECT_ID, alert_type: str = "PRELIMINARY",
                         time_created: str = "2024-05-19T16:21:00Z", event_time: str = "2024-05-19T16:19:59Z",
                         significant: bool = True) -> bytes:
    """An IGWN alert (igwn.gwalert JSON, schema-valid) carrying ``skymap``."""

    doc = {
        "alert_type": alert_type,
        "time_created": time_created,
        "superevent_id": superevent_id,
        "urls": {"gracedb": f"https://example.org/superevents/{superevent_id}/view/"},
        "event": None if alert_type == "RETRACTION" else {
            "time": event_time, "far": 3.2e-10, "significant": significant, "instruments": ["H1", "L1", "V1"],
            "group": "CBC", "pipeline": "gwfollow.skymaps.simulate", "search": "MDC",
            "properties": {"HasNS": 0.98, "HasRemnant": 0.91, "HasMassGap": 0.01},
            "classification": {"BNS": 0.95, "NSBH": 0.03, "BBH": 0.0, "Terrestrial": 0.02},
            "duration": None, "central_frequency": None,
            "skymap": base64.b64encode(skymap).decode("ascii"),
        },
        "external_coinc": None,
    }
    return json.dumps(doc).encode()
