"""Test hygiene: a required component skipped in CI fails; settings in the environment stay out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from graph.context import Context

SKIPPING = """
import pytest

@pytest.mark.required_in_ci("chromium")
def test_needs_chromium():
    pytest.skip("chromium is not installed")

def test_optional():
    pytest.skip("not required")
"""


def test_a_required_component_that_skips_fails_in_ci(pytester: pytest.Pytester, monkeypatch):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_it=SKIPPING)
    pytester.makeini("[pytest]\nmarkers =\n    required_in_ci(component): x\n")
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*skipped in CI, where chromium must be installed*"])
    monkeypatch.delenv("CI")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(skipped=2)


NO_POSTGRES = """
import pytest

@pytest.fixture(scope="session")
def postgres():
    pytest.skip("no PostgreSQL here")

def test_on_both_backends(db):
    pass

def test_on_the_cluster(postgres):
    pass
"""


def test_a_postgres_test_that_skips_fails_in_ci(pytester: pytest.Pytester, monkeypatch):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_it=NO_POSTGRES)
    pytester.makeini("[pytest]\nmarkers =\n    required_in_ci(component): x\n")
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, errors=2)  # the SQLite side passes; both PostgreSQL tests fail (setup)
    result.stdout.fnmatch_lines(["*skipped in CI, where PostgreSQL*must be installed*"])
    monkeypatch.delenv("CI")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=2)


def test_settings_in_the_environment_do_not_reach_tests():
    # .ci/run runs the suite with MOCKINGBIRD_STRATEGY=ttt and MOCKINGBIRD_SAMPLES=not-a-number set
    assert not [k for k in os.environ if k.startswith("MOCKINGBIRD_")]
    assert Context().model_dump() == {k: f.default for k, f in Context.model_fields.items()}
