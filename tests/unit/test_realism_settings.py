"""`--realism` specs: a preset, key=value pairs, and errors that say what is wrong."""

from __future__ import annotations

import pytest

from mqless_cli.local.realism import AWS, OFF, parse_realism
from mqless_cli.main import build_parser


def test_aws_turns_on_every_behaviour_with_its_documented_default() -> None:
    # Given / When the `aws` preset
    realism = parse_realism("aws")

    # Then each behaviour has AWS's figure
    assert realism == AWS
    assert realism.read_lag_ms == 500
    assert realism.stream_poll_ms == 250
    assert realism.shard_roll_minutes == 240
    assert realism.throttle and realism.partition_wcu == 1000 and realism.partition_rcu == 3000
    assert realism.ttl == "random"
    assert 0 < realism.stream_redelivery < 1 and 0 < realism.kms_throttle < 1


def test_one_behaviour_can_be_turned_on_alone() -> None:
    # Given every behaviour off by default
    # When only throttling is asked for
    realism = parse_realism("throttle=on")

    # Then it is on and nothing else is
    assert realism.throttle
    assert realism.model_copy(update={"throttle": False}) == OFF
    assert realism.describe() == "throttle=True"


def test_settings_after_a_preset_override_it() -> None:
    """Given the aws preset followed by three settings, spelt with - and with _
    When the spec is parsed
    Then those settings have the values given and the rest stays the preset's
    """
    realism = parse_realism("aws, stream-redelivery=0.05, ttl=at-once, kms_throttle=0")

    assert realism.stream_redelivery == 0.05
    assert realism.ttl == "at-once"
    assert realism.kms_throttle == 0
    assert realism.throttle  # the rest is the preset's


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("aws,throttel=on", "unknown realism setting 'throttel'"),
        ("stream-redelivery=2", "stream-redelivery"),
        ("ttl=sometimes", "ttl"),
        ("throttle=on,aws", "preset"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(spec: str, says: str) -> None:
    """Given a spec with a misspelt setting, a probability over 1, an unknown ttl mode, or a preset
    after a setting
    When it is parsed
    Then a ValueError names what is wrong
    """
    with pytest.raises(ValueError, match=says):
        parse_realism(spec)


def test_mqless_dev_takes_the_realism_flag() -> None:
    # Given the aws preset with throttling turned back off
    # When `mqless dev --realism aws,throttle=off` is parsed
    args = build_parser().parse_args(["dev", "--realism", "aws,throttle=off"])

    # Then the runtime gets the settings, not the text
    assert args.realism == AWS.model_copy(update={"throttle": False})


def test_mqless_dev_refuses_a_bad_realism_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Given `mqless dev --realism throttle=maybe`
    When it is parsed
    Then it exits, naming throttle
    """
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dev", "--realism", "throttle=maybe"])
    assert "throttle" in capsys.readouterr().err
