"""autograder.bench's throughput once a batch runs (`once_running`), on hand-made completion times.
The bench itself is a benchmark, run by hand (README); what it computes from its measurements is tested here."""
import pytest

from autograder.bench import once_running

# One worker: a's result at 10 s carries the batch's start-up; b took 2 s, the blank c 0.25 s, d 2 s.
ONE = {"a": 10.0, "b": 12.0, "c": 12.25, "d": 14.25}


def test_the_submissions_finished_after_the_first_w_are_weighed_by_their_one_worker_time():
    many = {"b": 7.0, "a": 7.3, "c": 7.55, "d": 9.3}          # 2 workers: a and b first, then c and d
    one_s, many_s, count = once_running(ONE, many, 2)
    assert count == 2
    assert one_s == pytest.approx(0.25 + 2.0)                 # c and d, one after another
    assert many_s == pytest.approx(9.3 - 7.3)                 # from the 2nd result to the last
    assert one_s / many_s == pytest.approx(1.125)


def test_one_worker_against_itself_is_one():
    one_s, many_s, count = once_running(ONE, ONE, 1)
    assert (one_s, many_s, count) == (pytest.approx(4.25), pytest.approx(4.25), 3)


@pytest.mark.parametrize("one, many, why", [
    (ONE, {"b": 7.0, "c": 7.2, "a": 9.0, "d": 9.3}, "a is counted, and its 1-worker time is the start-up"),
    ({"a": 10.0, "b": 12.0}, {"a": 7.0, "b": 7.3}, "no result after the first 2"),
    (ONE, {"a": 7.0, "b": 7.3, "c": 7.5, "e": 9.0}, "not the same submissions"),
])
def test_what_cannot_be_measured_is_none(one, many, why):
    assert once_running(one, many, 2) is None, why
