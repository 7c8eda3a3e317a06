"""The numbers a reward folder serves: calibrated rewards, the ensemble's spread and z, the manifest's format."""

import doctest

import pytest

from probexit.rewards import ensemble, render
from probexit.rewards.ensemble import summarise
from probexit.rewards.manifest import MemberCard, RewardManifest, RewardModelError


@pytest.mark.parametrize("module", [ensemble, render], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def manifest(**overrides):
    cards = (MemberCard("m1", "x"), MemberCard("m2", "x"), MemberCard("m3", "x"))
    return RewardManifest(MemberCard("target", "x", mean=1.0, std=2.0), cards, **overrides)


def test_uncertainty_numbers():
    score = summarise([3.0, 1.0, 0.0, -1.0], manifest(spread_floor=0.1))
    assert score.reward == 3.0 and score.normalised == 1.0
    assert (score.ensemble_mean, score.ensemble_std, score.z) == (0.0, 1.0, 1.0)
    assert not score.flagged and score.members == [1.0, 0.0, -1.0]


def test_the_spread_floor_keeps_agreeing_members_from_inflating_z():
    score = summarise([5.0, 0.0, 0.0, 0.0], manifest(spread_floor=0.5))
    assert score.ensemble_std == 0.0 and score.z == pytest.approx(4.0) and score.flagged


def test_manifest_round_trip_and_format_check():
    original = manifest(notes={"round": 2})
    assert RewardManifest.from_json(original.to_json()) == original
    with pytest.raises(RewardModelError, match="unknown format"):
        RewardManifest.from_json({**original.to_json(), "format": "other/9"})
