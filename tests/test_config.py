"""Configuration: defaults, overrides, validation."""

from __future__ import annotations

import pytest

from gwfollow.config import load_config, packaged_defaults
from gwfollow.errors import ConfigError


def test_defaults_live_only_in_default_toml() -> None:
    import dataclasses

    import gwfollow.config as c

    classes = [c.Config, c.SkyMapConfig, c.MocConfig, c.FiltersConfig, c.StoreConfig, c.ServiceConfig,
               c.KafkaConfig, c.SpoolConfig, c.FetchConfig, c.TargetsConfig, c.TelescopeConfig, c.SiteConfig,
               c.CoverageConfig]
    with_default = [f"{k.__name__}.{f.name}" for k in classes for f in dataclasses.fields(k)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_default == []
    cfg = load_config(env={})
    assert cfg == packaged_defaults()
    assert cfg.skymap.levels == (0.5, 0.9) and cfg.skymap.boundary == "split"
    assert [t.name for t in cfg.telescopes] == ["ZTF"] and [s.name for s in cfg.sites] == ["Palomar"]
    # a named table built in code takes what it leaves out from [site_defaults]
    site = c.named_config(c.SiteConfig, "Somewhere", lat_deg=10.0)
    assert site.max_airmass == cfg.sites[0].max_airmass and site.lon_deg == 0.0


def test_a_missing_default_is_an_error(tmp_path, monkeypatch) -> None:
    import gwfollow.config as c

    text = c.default_toml_text().replace("norm_tolerance = 0.01\n", "")
    monkeypatch.setattr(c, "default_toml_text", lambda: text)
    c._packaged_tables.cache_clear()
    try:
        with pytest.raises(ConfigError, match="no value for norm_tolerance"):
            load_config(env={})
    finally:
        c._packaged_tables.cache_clear()


def test_named_sections_replace_defaults(tmp_path) -> None:
    p = tmp_path / "site.toml"
    p.write_text('[telescopes.DECam]\ngrid = "DECam_Fields.csv"\nfov_shape = "circle"\nfov_radius_deg = 1.1\n'
                 '[coverages.sdss]\nmocserver_id = "CDS/P/SDSS9/r"\n')
    cfg = load_config(p, env={})
    assert [t.name for t in cfg.telescopes] == ["DECam"] and cfg.telescopes[0].fov_radius_deg == 1.1
    assert [s.name for s in cfg.sites] == ["Palomar"]  # untouched section keeps the defaults
    assert cfg.coverages[0].mocserver_id == "CDS/P/SDSS9/r"
    p.write_text('[telescopes.X]\nfov_shape = "hexagon"\nfov_width_deg = 1\n')
    with pytest.raises(ConfigError, match="fov_shape"):
        load_config(p, env={})
    p.write_text('[sites.Y]\nlatitude = 3\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(p, env={})
    p.write_text('[coverages.Z]\n')
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(p, env={})


def test_file_and_env_override(tmp_path) -> None:
    p = tmp_path / "site.toml"
    p.write_text('[skymap]\nlevels = [0.68, 0.95]\nboundary = "exclude"\n')
    cfg = load_config(p, env={"GWFOLLOW_SKYMAP_NORM_TOLERANCE": "0.05"})
    assert cfg.skymap.levels == (0.68, 0.95)
    assert cfg.skymap.boundary == "exclude" and cfg.skymap.norm_tolerance == 0.05


@pytest.mark.parametrize("text,match", [
    ("[skymap]\nlevels = [1.5]\n", "not in"),
    ("[skymap]\nbogus = 1\n", "unknown key"),
    ("[nope]\nx = 1\n", "unknown section"),
    ("[skymap\n", "TOML"),
    ('[skymap]\nboundary = "middle"\n', "boundary"),
])
def test_invalid_config(tmp_path, text, match) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p, env={})


def test_config_is_frozen() -> None:
    cfg = load_config(env={})
    with pytest.raises(Exception):
        cfg.skymap.levels = (0.1,)  # type: ignore[misc]
