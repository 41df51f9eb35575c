"""Every rule and boundary of the iterative selection policy."""

import numpy as np
import pandas as pd
import pytest

from cryosift.errors import InputError
from cryosift.selection import SelectionPolicy, decide_round, final_split, n_accepted, rounds_for_box


def scores(values, classes=None):
    classes = classes if classes is not None else range(1, len(values) + 1)
    return pd.DataFrame({"class": list(classes), "score": list(values)})


def status_of(decision):
    return dict(zip(decision.table["class"], decision.table["status"]))


@pytest.mark.parametrize("box,rounds", [(64, 5), (199, 5), (200, 3), (256, 3), (300, 3), (301, 2), (512, 2)])
def test_rounds_from_box(box, rounds):
    assert rounds_for_box(box) == rounds


@pytest.mark.parametrize("n,accepted", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (10, 7), (20, 14), (30, 21), (100, 70)])
def test_seventy_percent_rounded_down(n, accepted):
    assert n_accepted(n, 0.7) == accepted


def test_attractor_rule_accepts_the_best_seventy_percent_of_classes_at_or_below_2_5():
    values = [2.4, 1.1, 2.5, 0.3, 3.0, 2.2, 1.9, 4.49, 2.0, 1.5, 2.3, 9.0, 0.8]  # 10 classes <= 2.5
    d = decide_round(scores(values), round=1, rounds=3)
    # best first: 0.3 (4), 0.8 (13), 1.1 (2), 1.5 (10), 1.9 (7), 2.0 (9), 2.2 (6) | 2.3 (11), 2.4 (1), 2.5 (3)
    assert d.classes("accepted").tolist() == [2, 4, 6, 7, 9, 10, 13]
    assert d.classes("attractor").tolist() == [1, 3, 11]
    assert d.classes("kept").tolist() == [5, 8] and d.classes("rejected").tolist() == [12]
    assert not d.stop


def test_ties_at_the_acceptance_rank_are_broken_by_class_number():
    d = decide_round(scores([2.0, 2.0, 2.0], classes=[9, 4, 6]), round=1, rounds=3)
    assert d.classes("accepted").tolist() == [4, 6] and d.classes("attractor").tolist() == [9]


def test_single_good_class_stays_as_attractor():
    d = decide_round(scores([1.2, 3.3, 4.7]), round=1, rounds=5)
    assert d.classes("accepted").size == 0 and d.classes("attractor").tolist() == [1]


def test_boundaries_are_numeric():
    values = [2.5, 2.5000001, 4.5, 4.4999999, -3.0, 5.0001, 17.0, -0.0]
    d = decide_round(scores(values), round=1, rounds=3, policy=SelectionPolicy(accept_fraction=1.0))
    st = status_of(d)
    assert st[1] == "accepted"   # exactly 2.5 counts as <= 2.5
    assert st[2] == "kept"       # just above 2.5
    assert st[3] == "rejected"   # exactly 4.5 is rejected (>= 4.5)
    assert st[4] == "kept"       # just below 4.5
    assert st[5] == "accepted"   # negative: better than 1.0, not thrown away
    assert st[6] == "rejected" and st[7] == "rejected"  # above 5 is worse than 5
    assert st[8] == "accepted"


def test_negative_scores_rank_first_for_acceptance():
    d = decide_round(scores([-1.5, 2.0, 1.0, -0.2]), round=1, rounds=3)  # 4 candidates -> 2 accepted
    assert d.classes("accepted").tolist() == [1, 4]


def test_later_rounds_only_reject_and_stop_when_nothing_is_rejected():
    d2 = decide_round(scores([1.0, 2.0, 4.6]), round=2, rounds=5)
    assert d2.classes("accepted").size == 0 and d2.classes("attractor").size == 0
    assert d2.classes("kept").tolist() == [1, 2] and d2.classes("rejected").tolist() == [3]
    assert not d2.stop
    d3 = decide_round(scores([1.0, 2.0, 4.4]), round=3, rounds=5)
    assert d3.stop and d3.classes("rejected").size == 0  # early stop
    first = decide_round(scores([3.0, 4.0]), round=1, rounds=5)
    assert not first.stop  # round 1 always reclassifies (accepted classes changed the set)
    last = decide_round(scores([3.0, 4.9]), round=5, rounds=5)
    assert last.stop


def test_a_round_that_leaves_nothing_to_classify_ends_the_loop():
    every_class_rejected = decide_round(scores([4.6, 4.9, 5.3]), round=1, rounds=5)
    assert every_class_rejected.stop and every_class_rejected.classes("rejected").tolist() == [1, 2, 3]
    # The round after it reuses the same classification and decides the same way.
    assert decide_round(scores([4.6, 4.9, 5.3]), round=2, rounds=5).stop
    one_good_class = decide_round(scores([1.0, 4.9]), round=1, rounds=5)  # floor(0.7) = 0 accepted: 1 attractor
    assert not one_good_class.stop and one_good_class.classes("attractor").tolist() == [1]


def test_attractor_rule_in_every_round_when_asked():
    d = decide_round(scores([1.0, 2.0, 3.0]), round=2, rounds=3, policy=SelectionPolicy(accept_every_round=True))
    assert d.classes("accepted").tolist() == [1] and d.classes("attractor").tolist() == [2]


def test_custom_thresholds():
    policy = SelectionPolicy(accept_score=2.0, accept_fraction=0.5, reject_score=4.0)
    d = decide_round(scores([1.0, 2.0, 2.1, 4.0, 3.99]), round=1, rounds=2, policy=policy)
    assert d.classes("accepted").tolist() == [1] and d.classes("attractor").tolist() == [2]
    assert d.classes("kept").tolist() == [3, 5] and d.classes("rejected").tolist() == [4]


def test_final_split_keeps_scores_at_or_below_each_cutoff():
    split = final_split(scores([2.5, 3.5, 4.5, 2.51, -1.0, 5.5, 3.49]))
    assert split.loc[split["le_2.5"], "class"].tolist() == [1, 5]
    assert split.loc[split["le_3.5"], "class"].tolist() == [1, 2, 4, 5, 7]
    assert split.loc[split["le_4.5"], "class"].tolist() == [1, 2, 3, 4, 5, 7]
    custom = final_split(scores([3.0, 3.1]), cutoffs=[3.05])
    assert custom["le_3.05"].tolist() == [True, False]


@pytest.mark.parametrize("bad,match", [(np.nan, "class 2: score is nan"), ("abc", "class 2: score is 'abc'"),
                                       (np.inf, "class 2: score is inf")])
def test_non_numeric_scores_are_errors_naming_the_class(bad, match):
    table = pd.DataFrame({"class": [1, 2], "score": [1.0, bad]}, dtype=object)
    with pytest.raises(InputError, match=match):
        decide_round(table, 1, 3, source="scores.csv")
    with pytest.raises(InputError, match=match):
        final_split(table)


def test_duplicate_class_is_an_error():
    with pytest.raises(InputError, match="class 3 is listed more than once"):
        decide_round(scores([1.0, 2.0], classes=[3, 3]), 1, 3)


def test_policy_validation():
    with pytest.raises(ValueError, match="accept fraction"):
        SelectionPolicy(accept_fraction=1.5)
    with pytest.raises(ValueError, match="below the reject score"):
        SelectionPolicy(accept_score=4.5, reject_score=4.5)
    with pytest.raises(ValueError, match="distinct finite"):
        SelectionPolicy(cutoffs=(2.5, 2.5))
    assert SelectionPolicy(cutoffs=(4.5, 2.5)).cutoffs == (2.5, 4.5)
