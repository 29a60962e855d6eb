"""The reference figures in the package: the same numbers as the project's shared table, and a
source for every one of them."""
import json
from pathlib import Path

import pytest

from cnnlite import models
from cnnlite.models.counts import compare_counts, format_comparison
from cnnlite.models.reference import REFERENCES

SHARED_TABLE = Path(__file__).resolve().parents[2] / "shared" / "references" / \
    "torchvision_models.json"


@pytest.mark.skipif(not SHARED_TABLE.exists(), reason="the project's shared folder is not here")
def test_the_torchvision_figures_are_the_shared_tables():
    table = json.loads(SHARED_TABLE.read_text())
    ours = {name: {"params": ref.params, "macs": ref.macs, "input": list(ref.input_size)}
            for name, ref in REFERENCES.items() if name in table}
    assert ours == table


def test_every_figure_names_its_source():
    for name, ref in REFERENCES.items():
        assert ref.counted_on, name
        assert ref.params > 0 and ref.macs > 0 and len(ref.input_size) == 3, name
        for accuracy in (ref.paper, ref.weights):
            if accuracy is not None:
                assert accuracy.source and accuracy.dataset, name
                assert all(value is None or 0 < value <= 100
                           for value in (accuracy.top1, accuracy.top5)), name


def test_reference_of_an_unknown_name_lists_the_close_ones():
    with pytest.raises(KeyError, match="unknown model 'vgg61'; did you mean vgg19, vgg16"):
        models.reference("vgg61")


def test_the_comparison_table_puts_our_counts_beside_the_reference():
    text = format_comparison(compare_counts(["resnet18", "lenet5"]))
    assert "11,689,512" in text and "1,814,073,344" in text and "69.8" in text
    assert "2 of 2 models have exactly the reference counts" in text
