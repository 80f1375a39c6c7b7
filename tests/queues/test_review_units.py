"""Fixes from the 2026-12-07 review of the queues that need no Label Studio server."""

from __future__ import annotations

import pytest

from alscale.exceptions import QueueError
from alscale.queues import LabelStudioConnector
from alscale.queues.labelstudio import annotation_record

MULTI = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="multiple">'
         '<Choice value="cat"/><Choice value="dog"/><Choice value="fox"/></Choices></View>')
TASK = {"id": 1, "data": {"alscale_id": 7, "text": "x"}, "meta": {"alscale_id": 7}}


def _choices(*values):
    return {"id": 3, "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": list(values)}}]}


def test_a_project_whose_choices_allow_several_answers_is_refused_at_push():
    conn = LabelStudioConnector("http://127.0.0.1:9", 3, data_columns=["text"])
    with pytest.raises(QueueError, match=r"<Choices name='label'> allows several answers \(choice=\"multiple\"\)") as err:
        conn.check_classes(["cat", "dog", "fox"], project={"label_config": MULTI})
    assert "\n" not in str(err.value)
    assert conn.check_classes(["cat", "dog", "fox"], project={"label_config": MULTI.replace("multiple", "single")}) == ("label", "text")


def test_an_answer_with_several_choices_is_refused_not_cut_to_its_first():
    with pytest.raises(QueueError, match=r"Expected one choice per answer .* Got 2: \['dog', 'cat'\]"):
        annotation_record(_choices("dog", "cat"), TASK, source="label-studio:3")
    assert annotation_record(_choices("dog"), TASK, source="label-studio:3")["label"] == "dog"


def test_a_model_lacking_a_class_of_a_workspace_without_classes_is_told_the_way_out():
    conn = LabelStudioConnector("http://127.0.0.1:9", 3, data_columns=["text"])
    single = MULTI.replace("multiple", "single")
    with pytest.raises(QueueError) as err:
        conn.check_classes(["cat", "dog"], project={"label_config": single}, no_class_list=True)
    text = str(err.value)
    assert "not in the model ['fox']" in text and "made without --classes" in text
    assert "--classes cat,dog,fox" in text and "take ['fox'] out of the project's choices" in text and "\n" not in text
    with pytest.raises(QueueError) as err:  # a workspace with a class list: its models know every class, nothing to add
        conn.check_classes(["cat", "dog"], project={"label_config": single})
    assert "--classes" not in str(err.value)


# --- 2026-12-08 review: an annotation without an id, and what a queue that keeps failing exits with -------------

@pytest.mark.parametrize("bad", [None, "", True, 1.5, {"x": 1}, "missing"])
def test_an_annotation_without_a_usable_id_is_refused(bad):
    """Labels are keyed on (source, annotation id): ``"id": null`` was stored as 'None', and a second such answer replaced the first."""
    annotation = _choices("dog")
    if bad == "missing":
        del annotation["id"]
    else:
        annotation["id"] = bad
    with pytest.raises(QueueError, match=r"Expected an annotation whose 'id' is an int or a non-empty string"):
        annotation_record(annotation, TASK, source="label-studio:3")
    assert annotation_record({**annotation, "id": "a1"}, TASK, source="label-studio:3")["annotation_id"] == "a1"

