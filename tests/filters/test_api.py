"""The public filter API: dialect detection, compile_filter, FilterError, compile-once behaviour, and the
documented cross-cloud examples on canonical events."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from bridge.filters import (
    EventBridgeFilter,
    EventGridFilter,
    Filter,
    FilterError,
    compile_filter,
    detect_dialect,
)
from tests.filters.helpers import (
    ALL_CANONICAL,
    RAW_CLOUDEVENT,
    RAW_EVENTGRID,
    RAW_SAGEMAKER,
)

# ----------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("spec", "dialect"),
    [
        ({"source": ["aws.sagemaker"]}, "eventbridge"),
        ({"detail": {"status": [{"prefix": "F"}]}}, "eventbridge"),
        ({}, "eventbridge"),
        ({"includedEventTypes": ["A"]}, "eventgrid"),
        ({"subjectBeginsWith": "x"}, "eventgrid"),
        ({"subjectEndsWith": "x"}, "eventgrid"),
        ({"isSubjectCaseSensitive": True}, "eventgrid"),
        ({"enableAdvancedFilteringOnArrays": True}, "eventgrid"),
        ({"advancedFilters": []}, "eventgrid"),
        ({"filter": {"includedEventTypes": ["A"]}}, "eventgrid"),
        ({"filter": {}}, "eventgrid"),
        ({"filter": {"status": ["x"]}}, "eventbridge"),
        ({"filter": ["x"]}, "eventbridge"),
        ({"filter": {"includedEventTypes": ["A"]}, "source": ["x"]}, "eventbridge"),
        ({"cesql": "status = 'failed'"}, "cesql"),
        ({"cesql": "x", "includedEventTypes": ["A"]}, "cesql"),
        ({"cesql": ["x"]}, "eventbridge"),
    ],
)
def test_detect_dialect(spec: dict[str, Any], dialect: str) -> None:
    """The key "cesql" with a string means cesql; Event Grid keys (bare or in a lone "filter" wrapper) mean
    eventgrid; anything else is a pattern."""
    assert detect_dialect(spec) == dialect


@pytest.mark.parametrize("spec", [["a"], "text", 5, None])
def test_detect_dialect_rejects_non_objects(spec: Any) -> None:
    """A filter that is not a JSON object raises FilterError at the root (or the given path)."""
    with pytest.raises(FilterError) as info:
        detect_dialect(spec)
    assert info.value.path == "$"
    with pytest.raises(FilterError) as info2:
        compile_filter(spec, path="routes[0].filter")
    assert info2.value.path == "routes[0].filter"


def test_compile_filter_auto_and_explicit() -> None:
    """compile_filter picks the dialect from the shape, or obeys an explicit one; unknown dialects fail."""
    f = compile_filter({"source": ["aws.sagemaker"]})
    assert isinstance(f, EventBridgeFilter)
    assert f.dialect == "eventbridge"
    g = compile_filter({"filter": {"includedEventTypes": ["All"]}})
    assert isinstance(g, EventGridFilter)
    assert g.dialect == "eventgrid"
    assert isinstance(f, Filter) and isinstance(g, Filter)
    assert compile_filter({}, "eventgrid").dialect == "eventgrid"
    with pytest.raises(FilterError, match="unknown filter dialect"):
        compile_filter({}, "sns")
    with pytest.raises(FilterError) as info:
        compile_filter({"source": "aws.sagemaker"}, "eventbridge", path="routes[3].filter")
    assert info.value.path == "routes[3].filter.source"


def test_filter_error_shape() -> None:
    """FilterError is a ValueError with path and message, str() is "path: message", and it pickles."""
    err = FilterError("detail.status[0]", 'unknown operator "prefx"')
    assert isinstance(err, ValueError)
    assert str(err) == 'detail.status[0]: unknown operator "prefx"'
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.message) == (err.path, err.message)
    assert FilterError("", "x").path == "$"


# ------------------------------------------------------------------------------------- compile once


class _Guarded(Mapping[str, Any]):
    """A mapping that can be locked so that any later read fails."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.locked = False

    def _check(self) -> None:
        if self.locked:
            raise AssertionError("the filter spec was read after compilation")

    def __getitem__(self, key: str) -> Any:
        self._check()
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        self._check()
        return iter(self._data)

    def __len__(self) -> int:
        self._check()
        return len(self._data)


def test_matches_never_reads_the_spec_again() -> None:
    """After compilation, matching uses only precomputed structures: the spec is never read again."""
    event = ALL_CANONICAL["sagemaker_training_failed"]
    eb_spec = _Guarded(
        {
            "type": ["ml.job.status_changed"],
            "status": ["failed"],
            "data": {"ResourceConfig": {"InstanceCount": [{"numeric": [">", 1]}]}},
        }
    )
    eg_spec = _Guarded(
        {
            "includedEventTypes": ["ml.job.status_changed"],
            "advancedFilters": [{"operatorType": "StringIn", "key": "status", "values": ["failed"]}],
        }
    )
    cq_spec = _Guarded({"cesql": "type = 'ml.job.status_changed' AND status = 'failed'"})
    eb_filter = compile_filter(eb_spec, "eventbridge")
    eg_filter = compile_filter(eg_spec, "eventgrid")
    cq_filter = compile_filter(cq_spec)
    eb_spec.locked = eg_spec.locked = cq_spec.locked = True
    assert eb_filter.matches(event)
    assert eg_filter.matches(event)
    assert cq_filter.matches(event)


def test_mutating_the_spec_after_compilation_changes_nothing() -> None:
    """A compiled filter keeps the meaning the spec had when it was compiled."""
    spec: dict[str, Any] = {"status": ["failed"]}
    f = compile_filter(spec)
    spec["status"].append("completed")
    spec["type"] = ["nothing"]
    assert f.matches({"status": "failed"})
    assert not f.matches({"status": "completed"})


# ------------------------------------------------------------------------- documented examples (both clouds)

FAILED_TRAINING_EVENTBRIDGE = {
    "type": ["ml.job.status_changed"],
    "status": ["failed"],
    "$or": [
        {"platform": ["azureml"], "subject": [{"prefix": "experiments/"}]},
        {"platform": ["sagemaker"], "subject": [{"prefix": "training-job/"}]},
    ],
}
FAILED_TRAINING_EVENTGRID = {
    "includedEventTypes": ["ml.job.status_changed"],
    "advancedFilters": [
        {"operatorType": "StringIn", "key": "status", "values": ["failed"]},
        {"operatorType": "StringBeginsWith", "key": "subject", "values": ["training-job/", "experiments/"]},
    ],
}
FAILED_TRAINING_CESQL = {
    "cesql": "type = 'ml.job.status_changed' AND status = 'failed' AND ("
             "(platform = 'azureml' AND subject LIKE 'experiments/%') OR "
             "(platform = 'sagemaker' AND subject LIKE 'training-job/%'))"
}
EXPECTED_FAILED_TRAINING = {
    "sagemaker_training_failed": True,
    "azureml_run_failed": True,
    "sagemaker_training_completed": False,
    "sagemaker_processing_failed": False,
    "azureml_model_registered": False,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FAILED_TRAINING))
def test_every_failed_training_job_either_cloud(name: str) -> None:
    """The docs' "every failed training job, either cloud" filter selects the same events in all three dialects."""
    event = ALL_CANONICAL[name]
    expected = EXPECTED_FAILED_TRAINING[name]
    assert compile_filter(FAILED_TRAINING_EVENTBRIDGE).matches(event) is expected
    assert compile_filter(FAILED_TRAINING_EVENTGRID).matches(event) is expected
    assert compile_filter(FAILED_TRAINING_CESQL).matches(event) is expected


def test_canonical_data_is_reachable_in_both_dialects() -> None:
    """Canonical events keep the original payload under data, so data.* filters work in both dialects."""
    event = ALL_CANONICAL["azureml_model_registered"]
    assert compile_filter({"data": {"ModelTags": {"area": ["diabetes"]}}}).matches(event)
    assert compile_filter(
        {
            "advancedFilters": [
                {"operatorType": "StringIn", "key": "data.ModelTags.area", "values": ["diabetes"]}
            ]
        }
    ).matches(event)
    assert compile_filter({"platform": ["azureml"], "origtype": [{"suffix": "ModelRegistered"}]}).matches(
        event
    )


def test_filters_on_original_events() -> None:
    """Existing rules written for the raw events keep working on the original (non-canonical) shapes."""
    assert compile_filter(
        {"source": ["aws.sagemaker"], "detail": {"TrainingJobStatus": ["Completed"]}}
    ).matches(RAW_SAGEMAKER)
    assert compile_filter(
        {
            "includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"],
            "subjectBeginsWith": "models/",
        }
    ).matches(RAW_EVENTGRID)
    assert compile_filter(
        {
            "filter": {
                "advancedFilters": [
                    {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Failed"]}
                ]
            }
        }
    ).matches(RAW_CLOUDEVENT)
