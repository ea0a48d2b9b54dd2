"""Observing sites by name: the configuration first, then gwfollow's own
table, then astropy's site registry read offline.

Names match case-insensitively, ignoring spaces, dashes and underscores
(``"Palomar"``, ``"palomar"``, ``"Siding Spring"``).  astropy's registry
(``EarthLocation.get_site_names`` / ``of_site``, several hundred
observatories) comes from the astropy-data repository; gwfollow never
downloads it: it is used only when astropy already has it in its cache
(``astropy.utils.data``), and a site found nowhere is a
:class:`~gwfollow.errors.ConfigError` that names the sites known and how
to configure another.  astropy 8 ships no copy of the registry inside the
package, so on a fresh installation only the configured sites and
:data:`~gwfollow.targets.observability.KNOWN_SITES` are available.  No
package of the registries gwfollow installs from ships it either (checked
for issue 12: Debian's ``python3-astropy`` 5.2.1 carries only astropy's
built-in ``sites.json``, the Greenwich example; ``python3-astroplan``,
``astropy-utils`` and ``python3-pytest-astropy`` carry none; on PyPI
``astropy-iers-data`` holds the IERS tables only), so gwfollow does not
bundle a copy of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from astropy.coordinates import EarthLocation
from astropy.utils import data

from gwfollow.config import SiteConfig
from gwfollow.errors import ConfigError
from gwfollow.targets.observability import KNOWN_SITES, Site


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def site_from_config(sc: SiteConfig) -> Site:
    """A validated :class:`Site` from a ``[sites.NAME]`` table."""
    moon = sc.min_moon_sep_deg or None
    s = Site(sc.name, float(sc.lat_deg), float(sc.lon_deg), float(sc.height_m), float(sc.max_airmass),
             float(sc.max_sun_alt_deg), None if moon is None else float(moon))
    s.validate()
    return s


def _astropy_registry() -> Any | None:
    """astropy's site registry if it is in astropy's cache; never downloads."""
    # allow_internet is astropy's own switch for this lookup; set only for
    # the duration of the call, so a missing cache fails instead of downloading.
    with data.conf.set_temp("allow_internet", False):
        try:
            EarthLocation.get_site_names()
        except Exception:  # noqa: BLE001 -- astropy raises OSError/URLError/KeyError variants when uncached
            return None
    return EarthLocation


def site_names(sites: Iterable[SiteConfig] = ()) -> list[str]:
    """Every site name that :func:`site_by_name` resolves here (configured, built-in, astropy's cache)."""
    names = [sc.name for sc in sites] + sorted(KNOWN_SITES)
    reg = _astropy_registry()
    if reg is not None:
        names += [n for n in reg.get_site_names() if n]
    return list(dict.fromkeys(names))


def site_by_name(name: str, sites: Iterable[SiteConfig] = (), *, max_airmass: float = 2.0,
                 max_sun_alt_deg: float = -12.0) -> Site:
    """The site called ``name``.

    Parameters
    ----------
    name : str
        ``"Palomar"``, a ``[sites.NAME]`` of the configuration, or a name of
        astropy's site registry (when it is cached).
    sites : iterable of SiteConfig
        The configured sites, searched first (their limits are used).
    max_airmass, max_sun_alt_deg : float
        Limits for a site that is not configured.

    Raises
    ------
    ConfigError
        When no site has that name.

    Examples
    --------
    >>> site_by_name("Palomar").lat_deg
    33.3563
    """
    k = _key(name)
    sites = tuple(sites)
    for sc in sites:
        if _key(sc.name) == k:
            return site_from_config(sc)
    for sname, s in KNOWN_SITES.items():
        if _key(sname) == k:
            site = Site(name, s.lat_deg, s.lon_deg, s.height_m, float(max_airmass), float(max_sun_alt_deg))
            site.validate()
            return site
    reg = _astropy_registry()
    if reg is not None:
        match = next((n for n in reg.get_site_names() if _key(n) == k), None)
        if match is not None:
            loc = reg.of_site(match)
            site = Site(name, float(loc.lat.deg), float(loc.lon.deg), float(loc.height.to_value("m")),
                        float(max_airmass), float(max_sun_alt_deg))
            site.validate()
            return site
    known = ", ".join([sc.name for sc in sites] + sorted(KNOWN_SITES))
    raise ConfigError(
        f"unknown site {name!r}; known here: {known}",
        hint="add [sites.NAME] with lat_deg, lon_deg and height_m to your configuration",
    )


__all__ = ["site_by_name", "site_from_config", "site_names"]
