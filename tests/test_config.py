"""Configuration: defaults, overrides, validation."""

from __future__ import annotations

import pytest

from gwfollow.config import Config, load_config
from gwfollow.errors import ConfigError


def test_defaults_match_dataclasses() -> None:
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.skymap.levels == (0.5, 0.9) and cfg.skymap.boundary == "split"


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
