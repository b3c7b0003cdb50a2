"""The three costs the runner removes from Great Expectations (mlplatform/ingestion/gx_costs.py): each
still removed with the pinned GX, and every result still GX's own."""

import subprocess
import sys

import pandas as pd
import pytest

from mlplatform.ingestion.gx_costs import one_validation
from mlplatform.ingestion.validation import TEXT_STORAGE, SuiteRunner, validate_file
from mlplatform.schemas import TRANSACTIONS
from tests.ingestion.test_validation import CONTEXT, transactions, write


@pytest.fixture(scope="module")
def runner():
    return SuiteRunner()


@pytest.fixture
def builds(runner, monkeypatch):
    """How many times an expectation's configuration is built (each build names the expectation's type
    once, through `camel_to_snake`)."""
    from great_expectations.expectations import expectation

    runner.expectations()  # GX imported and the costs removed before counting
    counted = []
    name = expectation.camel_to_snake
    monkeypatch.setattr(expectation, "camel_to_snake", lambda text: counted.append(text) or name(text))
    return counted


def bad_transactions() -> pd.DataFrame:
    """A file failing several content checks, so GX's SUMMARY results (counts, samples) are compared."""
    return transactions(
        customer_id=["C1", None, "C404"], amount=[12.5, -3.0, 9e12], currency=["EUR", "XXX", "GBP"]
    )


def test_gx_does_not_fingerprint_the_frames_it_validates(tmp_path, runner, monkeypatch):
    """GX hashes every pandas batch under 1 GB, twice per validation, for a marker nothing reads."""
    from great_expectations.execution_engine import pandas_execution_engine

    hashed = []
    hash_frame = pandas_execution_engine.hash_pandas_dataframe
    monkeypatch.setattr(
        pandas_execution_engine, "hash_pandas_dataframe", lambda frame: hashed.append(1) or hash_frame(frame)
    )
    validation = validate_file(write(tmp_path, transactions()), TRANSACTIONS, CONTEXT, runner)
    assert validation.passed
    assert hashed == []


@pytest.mark.parametrize("frame", [transactions, bad_transactions], ids=["passing", "failing"])
def test_each_configuration_is_built_a_few_times_per_validation_not_per_read(tmp_path, runner, builds, frame):
    """GX builds an expectation's configuration at every read of a kwarg: 62 times per expectation and
    validation of this file. With the runner, once for each copy GX makes of the expectation: 8."""
    validation = validate_file(write(tmp_path, frame()), TRANSACTIONS, CONTEXT, runner)
    expectations = len(validation.outcomes)
    validations = 1 if validation.passed else 2  # a failing file is validated again for its details
    assert len(builds) <= 10 * expectations * validations, (len(builds), expectations)


def test_outside_a_validation_gx_builds_every_configuration_again(runner, builds):
    gxe = runner.expectations()
    expectation = gxe.ExpectColumnValuesToNotBeNull(column="amount")
    assert expectation.configuration is not expectation.configuration
    assert len(builds) == 2


def test_a_changed_expectation_gives_its_new_configuration(runner):
    gxe = runner.expectations()
    expectation = gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, max_value=10)
    with one_validation():
        first = expectation.configuration
        assert expectation.configuration is first  # reused while nothing changes
        expectation.max_value = 99
        assert expectation.configuration.kwargs["max_value"] == 99
        assert first.kwargs["max_value"] == 10


def test_a_nested_validation_leaves_the_outer_one_noticing_changes(runner):
    gxe = runner.expectations()
    expectation = gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, max_value=10)
    with one_validation():
        assert expectation.configuration.kwargs["max_value"] == 10
        with one_validation():
            expectation.max_value = 99
        assert expectation.configuration.kwargs["max_value"] == 99


@pytest.mark.parametrize("result_format", ["BOOLEAN_ONLY", "SUMMARY"])
@pytest.mark.parametrize("frame", [transactions, bad_transactions], ids=["passing", "failing"])
def test_every_result_is_gxs_own(tmp_path, runner, frame, result_format):
    """The suites of a file on the same frame, validated inside `one_validation` and with GX's own
    property: every result whole (success, counts, samples, observed values, the configuration it names)."""
    from great_expectations import ExpectationSuite

    from mlplatform.ingestion.validation import (
        content_expectations,
        read_landing_file,
        schema_expectations,
        with_known_flags,
    )

    gxe = runner.expectations()
    _, batch_definition = runner._gx
    read = read_landing_file(write(tmp_path, frame()), TRANSACTIONS, for_validation=True)
    flagged = with_known_flags(read, TRANSACTIONS, CONTEXT)
    added = [column for column in flagged.columns if column not in TRANSACTIONS.columns]

    def results() -> list[dict]:
        expectations = schema_expectations(gxe, TRANSACTIONS, list(flagged.columns), added_columns=added)
        suite = ExpectationSuite(
            name="file", expectations=expectations + content_expectations(gxe, TRANSACTIONS, CONTEXT)
        )
        batch = batch_definition.get_batch(batch_parameters={"dataframe": flagged})
        return [r.to_json_dict() for r in batch.validate(suite, result_format=result_format).results]

    with pd.option_context("mode.string_storage", TEXT_STORAGE):  # as `validating` reads the frame's text
        own = results()
        with one_validation():
            reused = results()
    assert reused == own
    assert own and all(r["success"] for r in own) is (frame is transactions)


def test_gx_is_imported_without_scipy_stats_which_loads_whole_when_used():
    """In a new process: after GX's import scipy.stats is not loaded; used afterwards (directly, and by
    scikit-learn, which imports it too), it gives what it gives in a process without GX."""
    statistic = "from scipy.stats import ks_2samp; print(ks_2samp([1, 2, 3, 4], [3, 4, 5, 6]).pvalue)"
    after_gx = (
        "import sys\n"
        "from mlplatform.ingestion.validation import SuiteRunner\n"
        "SuiteRunner.shared().expectations()\n"
        "assert 'great_expectations' in sys.modules\n"
        "assert 'scipy.stats._stats_py' not in sys.modules, 'GX loaded scipy.stats'\n"
        "import sklearn.ensemble\n"
        f"{statistic}\n"
    )
    run = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        for code in (after_gx, statistic)
    ]
    assert [r.returncode for r in run] == [0, 0], run[0].stderr[-2000:]
    assert run[0].stdout == run[1].stdout
