from pathlib import Path

import pytest

from dispatcher.config import ConfigError, load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parents[1]


EXAMPLE_SECRETS = {
    "JIAOYING_TWILIO_AUTH_TOKEN": "t",
    "JIAOYING_ALIYUN_ACCESS_KEY_SECRET": "s",
    "JIAOYING_ALIYUN_CALLBACK_TOKEN": "aliyun-callback-token-1",
    "JIAOYING_TENCENT_SECRET_KEY": "k",
    "JIAOYING_TENCENT_CALLBACK_TOKEN": "tencent-callback-token-1",
    "JIAOYING_WECOM_CORP_SECRET": "c",
    "JIAOYING_WECOM_TOKEN": "w",
    "JIAOYING_WECOM_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}


def test_example_config_loads_and_matches_defaults() -> None:
    settings = load_settings(ROOT / "config.example.toml", env=EXAMPLE_SECRETS)
    default = load_settings(None, env={})
    assert settings.policies == default.policies
    assert settings.senders[0].name == "county-met"
    # mainland numbers to the domestic providers, everyone else to Twilio
    assert settings.channels.sms.routes == {"+86": ["aliyun", "tencent"]}
    assert settings.channels.voice.routes == {"+86": ["aliyun"]}
    assert settings.providers.wecom.recipient_limits == [(30, 60), (1000, 3600)]
    # the embedded default stays simulated, so the demo runs offline
    assert default.channels.sms.all_providers == ["simulated"]
    assert default.channels.wechat.all_providers == ["simulated"]


def test_example_config_names_the_missing_provider_secrets() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(ROOT / "config.example.toml", env={})
    assert "providers.twilio needs account_sid and auth_token" in str(error.value)
    without_wecom = {k: v for k, v in EXAMPLE_SECRETS.items() if "WECOM_ENCODING" not in k}
    with pytest.raises(ConfigError, match="43-character encoding_aes_key"):
        load_settings(ROOT / "config.example.toml", env=without_wecom)


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
