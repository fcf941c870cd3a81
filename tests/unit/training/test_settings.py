"""Settings: flags over MODELPILOT_* variables over defaults; the alias and stage flavours."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelpilot.training.settings import parse_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPILOT_RESULT_FILE", raising=False)
    for name in ("MODEL_NAME", "DATA_URI", "EPOCHS", "CANDIDATE_STAGE", "CHAMPION_STAGE", "EXPERIMENT"):
        monkeypatch.delenv(f"MODELPILOT_{name}", raising=False)


def test_environment_variables_are_the_fallback_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPILOT_MODEL_NAME", "ids")
    monkeypatch.setenv("MODELPILOT_EPOCHS", "12")
    monkeypatch.setenv("MODELPILOT_DATA_URI", "s3://b/k.parquet")
    settings = parse_settings(["--epochs", "4"])
    assert (settings.model_name, settings.epochs, settings.data_uri) == ("ids", 4, "s3://b/k.parquet")
    assert settings.experiment_name == "ids"


def test_defaults_use_aliases_champion_and_challenger() -> None:
    settings = parse_settings(["--model-name", "ids"])
    assert not settings.uses_stages
    assert (settings.champion_alias, settings.candidate_alias) == ("champion", "challenger")
    assert settings.data_uri == ""


def test_one_stage_flag_selects_the_stage_flavour_with_the_usual_other_stage() -> None:
    settings = parse_settings(["--model-name", "ids", "--candidate-stage", "Staging"])
    assert settings.uses_stages
    assert (settings.champion_stage, settings.candidate_stage) == ("Production", "Staging")


def test_empty_environment_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPILOT_CANDIDATE_STAGE", "")
    monkeypatch.setenv("MODELPILOT_RESULT_FILE", "")
    settings = parse_settings(["--model-name", "ids"])
    assert not settings.uses_stages
    assert settings.result_file is None


def test_bad_values_and_a_missing_model_name_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="model_name"):
        parse_settings([])
    with pytest.raises(ValidationError, match="epochs"):
        parse_settings(["--model-name", "ids", "--epochs", "0"])


def test_train_and_gate_configs_carry_the_settings() -> None:
    settings = parse_settings(["--model-name", "ids", "--learning-rate", "0.01", "--auc-tolerance", "0.02"])
    assert settings.train_config(seed=9).learning_rate == 0.01
    assert settings.train_config(seed=9).seed == 9
    assert settings.gate_config().auc_tolerance == 0.02
