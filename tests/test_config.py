from pathlib import Path

import pytest

from dispatcher.config import ConfigError, load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads_and_matches_defaults() -> None:
    settings = load_settings(ROOT / "config.example.toml", env={})
    default = load_settings(None, env={})
    assert settings.policies == default.policies
    assert settings.senders[0].name == "county-met"


def test_env_overrides_secrets() -> None:
    settings = settings_from_dict(
        {"senders": [{"name": "county-met", "secret": "x"}]},
        env={"JIAOYING_SENDER_COUNTY_MET_SECRET": "from-env", "JIAOYING_SECRET_KEY": "k"},
    )
    assert settings.senders[0].secret == "from-env" and settings.app.secret_key == "k"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"app": {"environment": "production"}}, "secret_key"),
        ({"policies": {"purple": {}}}, "purple"),
        ({"policies": {"red": {"channels": ["fax"], "answer_within_min": 5, "ladder": []}}}, "fax"),
        ({"worker": {"sweep_interval_s": 0}}, "worker.sweep_interval_s"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_config_names_the_problem(raw: dict, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_dict(raw, env={})
    assert words in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})
