from p2pdata.training import JobSpec, matching_jobs
from tests.training.conftest import make_manifest


def spec(name: str, trigger: dict[str, object] | None) -> JobSpec:
    data: dict[str, object] = {"name": name, "entry": {"module": "m"}}
    if trigger is not None:
        data["trigger"] = trigger
    return JobSpec.from_dict(data)


SPECS = [
    spec("any", {"dataset": "*"}),
    spec("toy-glob", {"dataset": "toy*"}),
    spec("exact-other", {"dataset": "imagenet"}),
    spec("from-a", {"dataset": "*", "publisher": "cluster-a"}),
    spec("from-b", {"dataset": "*", "publisher": "cluster-b"}),
    spec("tagged", {"dataset": "*", "tag": "tabular"}),
    spec("two-tags", {"dataset": "*", "tag": ["tabular", "small"]}),
    spec("manual-only", None),
]


def names(manifest_kwargs: dict[str, object]) -> list[str]:
    return [s.name for s in matching_jobs(SPECS, make_manifest(**manifest_kwargs))]


def test_glob_publisher_and_tags() -> None:
    assert names({"name": "toy-2", "owner": "cluster-a", "tags": ("tabular",)}) == [
        "any", "toy-glob", "from-a", "tagged"]


def test_all_tags_required() -> None:
    assert names({"name": "x", "owner": "cluster-b", "tags": ("small", "tabular")}) == [
        "any", "from-b", "tagged", "two-tags"]


def test_glob_is_case_sensitive_and_whole_name() -> None:
    assert names({"name": "imagenet-small", "owner": "c"}) == ["any"]
    assert names({"name": "imagenet", "owner": "c"}) == ["any", "exact-other"]


def test_job_without_trigger_never_matches() -> None:
    assert all(s.name != "manual-only" for s in matching_jobs(SPECS, make_manifest()))
