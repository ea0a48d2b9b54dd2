"""The per-alert core (:mod:`.core`: one alert in, its products out) and the report files
(:mod:`.report`)."""
