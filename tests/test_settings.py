"""settings.py: the environment-variable parsers every module uses."""

from __future__ import annotations

import pytest

import settings
from settings import SettingsError


def test_unset_or_empty_gives_the_default():
    env = {"EMPTY": ""}
    assert settings.env_str("EMPTY", "d", environ=env) == "d"
    assert settings.env_int("MISSING", 7, environ=env) == 7
    assert settings.env_float("EMPTY", 0.5, environ=env) == 0.5
    assert settings.env_bool("MISSING", True, environ=env) is True


def test_values_are_parsed():
    env = {"N": "12", "F": "0.25", "B1": "Yes", "B0": "off"}
    assert settings.env_int("N", environ=env, minimum=1) == 12
    assert settings.env_float("F", environ=env, positive=True) == 0.25
    assert settings.env_bool("B1", environ=env) is True and settings.env_bool("B0", True, environ=env) is False


@pytest.mark.parametrize("call, message", [
    (lambda e: settings.env_int("N", environ=e), "N must be a whole number, got 'x'"),
    (lambda e: settings.env_int("Z", environ=e, minimum=1), "Z must be at least 1, got 0"),
    (lambda e: settings.env_float("N", environ=e), "N must be a number, got 'x'"),
    (lambda e: settings.env_float("Z", environ=e, positive=True), "Z must be positive, got 0.0"),
    (lambda e: settings.env_bool("N", environ=e), "N must be one of 1/true/yes/on or 0/false/no/off, got 'x'"),
])
def test_bad_values_name_the_variable_and_the_value(call, message):
    with pytest.raises(SettingsError) as info:
        call({"N": "x", "Z": "0"})
    assert str(info.value) == message
