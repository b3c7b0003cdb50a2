"""Routing rules and the routing file, without a server."""

import pytest
from pydantic import ValidationError

from mlplatform.serving.routing import Arm, Mode, RoutingFile, RoutingPolicy, choose_arm, customer_bucket

CUSTOMERS = [f"c{n:06d}" for n in range(20_000)]


@pytest.mark.parametrize("percent", [5.0, 10.0, 50.0])
def test_a_canary_sends_the_configured_share_of_customers_to_the_challenger(percent):
    policy = RoutingPolicy(mode=Mode.CANARY, challenger_percent=percent)
    share = sum(choose_arm(policy, c, True) is Arm.CHALLENGER for c in CUSTOMERS) / len(CUSTOMERS) * 100
    assert share == pytest.approx(percent, abs=1.0)


def test_a_customer_always_gets_the_same_arm_and_a_new_salt_reshuffles_them():
    policy = RoutingPolicy(mode=Mode.AB, challenger_percent=50)
    first = [choose_arm(policy, c, True) for c in CUSTOMERS[:500]]
    assert [choose_arm(policy, c, True) for c in CUSTOMERS[:500]] == first
    reshuffled = RoutingPolicy(mode=Mode.AB, challenger_percent=50, salt="experiment-2")
    moved = sum(a != choose_arm(reshuffled, c, True) for a, c in zip(first, CUSTOMERS[:500], strict=True))
    assert 150 < moved < 350  # about half change arm under an independent split


def test_champion_only_shadow_and_a_missing_challenger_all_answer_with_the_champion():
    for policy in (RoutingPolicy(), RoutingPolicy(mode=Mode.SHADOW)):
        assert {choose_arm(policy, c, True) for c in CUSTOMERS[:1000]} == {Arm.CHAMPION}
    canary = RoutingPolicy(mode=Mode.CANARY, challenger_percent=100)
    assert {choose_arm(canary, c, False) for c in CUSTOMERS[:1000]} == {Arm.CHAMPION}


def test_buckets_spread_evenly_over_0_to_100():
    buckets = [customer_bucket(c, "s") for c in CUSTOMERS]
    assert min(buckets) >= 0 and max(buckets) < 100
    assert sum(b < 25 for b in buckets) / len(buckets) == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize(
    "fields",
    [
        {"mode": "canary"},  # a canary with no share
        {"mode": "ab", "challenger_percent": 0},
        {"mode": "canary", "challenger_percent": 120},
        {"mode": "blue_green"},
        {"threshold": 1.5},
    ],
)
def test_an_invalid_policy_is_refused(fields):
    with pytest.raises(ValidationError):
        RoutingPolicy(**fields)


def test_the_routing_file_is_followed_when_it_changes_and_a_broken_one_keeps_the_last_good_policy(tmp_path):
    routing = RoutingFile(tmp_path / "serving" / "routing.json")
    assert routing.current() == RoutingPolicy()  # no file: champion only
    routing.write(RoutingPolicy(mode=Mode.CANARY, challenger_percent=10))
    other_reader = RoutingFile(routing.path)  # another worker or replica
    assert other_reader.current().mode is Mode.CANARY

    routing.write(RoutingPolicy(mode=Mode.SHADOW))
    assert other_reader.current().mode is Mode.SHADOW
    routing.path.write_text('{"mode": "canary", "challenger_percent": 400}')
    assert other_reader.current().mode is Mode.SHADOW
    assert "not a valid routing policy" in other_reader.error
    routing.path.unlink()
    assert other_reader.current() == RoutingPolicy() and other_reader.error is None


def test_a_split_without_a_challenger_is_written_with_a_warning(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mlplatform.cli import main

    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["routing", "--mode", "canary", "--percent", "10"])
    assert result.exit_code == 0 and '"mode":"canary"' in result.stdout
    assert "no fraud_model version carries the `challenger` alias" in result.stderr
