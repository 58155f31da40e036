"""Test tiers (tests/fixtures/tiers.py): a test is marked broker by the fixtures it uses, and a test that starts a
broker without the marker fails instead of slipping into the fast tier."""

from __future__ import annotations

import pytest

from tests.fixtures.tiers import FAST

pytest_plugins = ["pytester"]
PLUGINS = ("-p", "tests.fixtures.kafka_aws", "-p", "tests.fixtures.tiers", "-p", "no:cacheprovider", "-p", "no:asyncio")


def test_a_test_using_a_broker_fixture_is_marked_broker_and_left_out_of_the_fast_tier(
    pytester: pytest.Pytester,
) -> None:
    """A test asking for a broker fixture, even through a fixture of its own, is deselected by the fast tier's
    selection; a test asking for none stays in it."""
    pytester.makepyfile(test_inner="""
        import pytest

        @pytest.fixture
        def topic(kafka_topic):
            return kafka_topic("x")

        def test_through_my_fixture(topic):
            pass

        def test_plain():
            pass
    """)
    result = pytester.runpytest(*PLUGINS, "-m", FAST, "--collect-only", "-q")
    assert "test_inner.py::test_plain" in result.stdout.str()
    assert "test_through_my_fixture" not in result.stdout.str()
    result.assert_outcomes(deselected=1)


def test_a_test_that_starts_a_broker_without_the_marker_fails_and_says_why(pytester: pytest.Pytester) -> None:
    """Starting a broker launcher from an unmarked test fails it before any process starts, naming the marker."""
    pytester.makepyfile(test_inner="""
        from testbed.servers import MotoServer

        def test_starts_moto(tmp_path):
            MotoServer(log_dir=tmp_path).start()
    """)
    result = pytester.runpytest(*PLUGINS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*this test starts a MotoServer but is not marked broker*"])
