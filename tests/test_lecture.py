"""The lecture slides' figures (REFERENCES section 2), recounted on cnnlite's models: each
exact count, and each of the slide's errors flagged with its reason."""
import pytest

from cnnlite.cli import main
from cnnlite.models.lecture import format_figures, lecture_figures

# topic -> (the exact counts its text must show, whether the slide's figure is right)
EXPECTED = {
    "AlexNet conv1": (["96x55x55", "34,848 weights", "+96 biases"], True),
    "AlexNet shapes": (["55-27-27-13-13-13-13-6"], True),
    "AlexNet parameters": (["60,965,224", "62,378,344"], True),
    "VGG-16 parameters": (["138,357,544"], True),
    "VGG-16 memory": (["15,237,608 values", "61 MB"], False),
    "naive Inception module on 28x28x256": (["28x28x672", "854,196,224 MACs"], True),
    "Inception module with 1x1 bottlenecks": (["28x28x480", "271,351,808 MACs"], False),
    "Inception parameters": (["1,089,536", "346,112"], False),
    "GoogLeNet parameters": (["6,624,904", "9.2x"], False),
    "ResNet bottleneck 256-64-64-256": (["69,632 vs 1,179,648"], True),
    "VGG-19 and ResNet-152 cost": (["19.63 G", "11.51 G"], False),
    "three stacked 3x3 convs": (["see 7x7", "27C^2 vs 49C^2"], True),
    "two 3x3 stride-2 convs": (["r1=3, j1=2, r2=7, j2=4"], True),
}


@pytest.fixture(scope="module")
def figures():
    return {figure.topic: figure for figure in lecture_figures()}


def test_every_figure_is_recounted(figures):
    assert set(figures) == set(EXPECTED)


@pytest.mark.parametrize("topic", EXPECTED)
def test_exact_counts_and_verdicts(figures, topic):
    counts, agrees = EXPECTED[topic]
    figure = figures[topic]
    for count in counts:
        assert count in figure.exact, (topic, figure.exact)
    assert figure.agrees == agrees
    if not agrees:
        assert figure.note, f"{topic}: a slide error must say why"


def test_the_text_flags_the_slides_errors(figures):
    text = format_figures(list(figures.values()))
    assert text.count("DIFFERS") == sum(not agrees for _, agrees in EXPECTED.values())
    assert "addition error" in text and "ten times too small" in text


def test_models_lecture_prints_them(capsys):
    assert main(["models", "--lecture"]) == 0
    out = capsys.readouterr().out
    assert "15,237,608" in out and "854,196,224" in out
