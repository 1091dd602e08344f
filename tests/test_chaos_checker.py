"""The checker's verdicts on recorded data (no cluster needed: it is a pure function)."""

from collections import Counter

from supervisor.chaos.checker import Holdings, check, write_stall
from tools.load import Attempt


def attempt(i: int, status: int | None, finished: float, started: float | None = None) -> Attempt:
    a = Attempt(index=i, msg=f"msg{i}", key=f"run-{i}", started=finished - 0.01 if started is None else started)
    a.finished, a.status = finished, status
    a.message_id = a.key if status == 201 else None
    return a


def test_everything_held_once_is_ok() -> None:
    attempts = [attempt(i, 201, float(i)) for i in range(1, 5)]
    report = check(attempts, Holdings(messages={"messages-1": ["run-1", "run-3"], "messages-2": ["run-2", "run-4"]},
                                      logging=["run-1", "run-2", "run-3", "run-4"]))
    assert report.ok
    assert (report.acknowledged, report.failed, report.lost, report.duplicated) == (4, 0, [], {})
    assert report.read_by == {"messages-1": 2, "messages-2": 2}


def test_acknowledged_but_not_held_is_lost_and_says_if_still_in_topic() -> None:
    attempts = [attempt(1, 201, 1.0), attempt(2, 201, 2.0)]
    report = check(attempts, Holdings(messages={"messages-1": ["run-1"]}, logging=["run-1"],
                                      topic=Counter({"run-1": 1, "run-2": 1})))
    assert not report.ok
    assert report.lost == ["run-2"] and report.lost_still_in_topic == ["run-2"]
    assert report.lost_from_map == ["run-2"]


def test_held_twice_by_one_instance_is_duplicated() -> None:
    report = check([attempt(1, 201, 1.0)], Holdings(messages={"messages-1": ["run-1", "run-1"]}, logging=["run-1"]))
    assert report.duplicated == {"run-1": 2} and not report.ok


def test_held_by_two_instances_after_a_rebalance_is_not_a_duplicate() -> None:
    report = check([attempt(1, 201, 1.0)], Holdings(messages={"messages-1": ["run-1"], "messages-2": ["run-1"]},
                                                    logging=["run-1"]))
    assert report.ok


def test_failed_post_stored_anyway_is_allowed_and_reported() -> None:
    report = check([attempt(1, 201, 1.0), attempt(2, 503, 2.0)],
                   Holdings(messages={"messages-1": ["run-1"]}, logging=["run-1", "run-2"]))
    assert report.ok and report.failed == 1 and report.failures == {"HTTP 503": 1}
    assert report.stored_unacknowledged == ["run-2"] and report.unexpected == []


def test_held_but_never_sent_is_unexpected() -> None:
    report = check([attempt(1, 201, 1.0)], Holdings(messages={"messages-1": ["run-1", "other"]}, logging=["run-1"]))
    assert report.unexpected == ["other"]


def test_write_stall_is_the_longest_gap_from_the_fault_on() -> None:
    attempts = [attempt(1, 201, 1.0), attempt(2, 201, 2.0), attempt(3, 503, 3.0), attempt(4, 201, 6.5), attempt(5, 201, 7.0)]
    assert write_stall(attempts, since=2.5) == 4.0
    assert write_stall(attempts, since=None) == 0.0


def test_other_runs_messages_are_out_of_scope() -> None:
    from supervisor.chaos.checker import scoped

    held = Holdings(messages={"messages-1": ["run-1", "old-7", "old-7"]}, logging=["run-1", "old-7"],
                    topic=Counter({"run-1": 1, "old-7": 2}))
    report = check([attempt(1, 201, 1.0)], scoped(held, "run"))
    assert report.ok and report.unexpected == [] and report.duplicated == {}
