"""Using a trained model: checkpoints keep their preprocessing, ``predict`` and ``cnnlite
predict`` classify image files exactly as the training images were prepared."""
import numpy as np
import pytest
from PIL import Image

from cnnlite import checkpoint
from cnnlite.autograd import no_grad
from cnnlite.checkpoint import CheckpointError
from cnnlite.cli import main, run_demo
from cnnlite.data import Digits
from cnnlite.predict import load_trained_model, predict, prepare_image
from cnnlite.tensor import Tensor

SAMPLE = 0  # the test digit saved as a PNG


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch of the demo (a few seconds): its checkpoint, and one test digit as a PNG."""
    folder = tmp_path_factory.mktemp("demo")
    run_demo(out=folder, epochs=1, progress=False)
    digit = Digits(train=False).images[SAMPLE, 0]                  # (8, 8) in [0, 1]
    Image.fromarray(np.round(digit * 255).astype(np.uint8), mode="L").save(folder / "digit.png")
    return folder


def test_the_checkpoint_keeps_the_preprocessing_of_training(run):
    inference = checkpoint.load(run / "checkpoint.npz")["inference"]
    assert inference["model"] == "lenet5" and inference["num_classes"] == 10
    preprocessing = inference["preprocessing"]
    pixels = Digits(train=True).images
    assert preprocessing["dataset"] == "digits" and preprocessing["channels"] == 1
    assert preprocessing["image_size"] == [8, 8] and preprocessing["input_size"] == [32, 32]
    assert preprocessing["mean"] == pytest.approx([pixels.mean()])
    assert preprocessing["std"] == pytest.approx([pixels.std()])
    assert preprocessing["classes"] == [str(digit) for digit in range(10)]


def test_an_image_file_is_prepared_as_the_training_images_were(run):
    model, preprocessing = load_trained_model(run / "checkpoint.npz")
    trained_on = Digits(train=False, transform=preprocessing.transform())[SAMPLE][0]
    prepared = prepare_image(run / "digit.png", preprocessing)
    assert prepared.shape == (1, 32, 32)
    # The PNG rounds each pixel to 1/255, which the standardisation scales by 1 / std.
    np.testing.assert_allclose(prepared, trained_on, atol=0.5 / 255 / preprocessing.std[0] + 1e-6)


def test_top1_is_the_models_prediction_on_the_preprocessed_array(run):
    model, preprocessing = load_trained_model(run / "checkpoint.npz")
    trained_on = Digits(train=False, transform=preprocessing.transform())[SAMPLE][0]
    with no_grad():
        expected = int(model(Tensor(trained_on[None])).data.argmax())
    (classes,) = predict(run / "checkpoint.npz", [run / "digit.png"], top=3)
    assert len(classes) == 3
    assert classes[0][0] == preprocessing.classes[expected]
    probabilities = [p for _, p in classes]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1


def test_a_colour_image_of_another_size_is_converted_to_grey_and_resized(run):
    _, preprocessing = load_trained_model(run / "checkpoint.npz")
    grey = Image.open(run / "digit.png")
    colour = grey.convert("RGB").resize((24, 24), Image.NEAREST)
    prepared = prepare_image(colour, preprocessing)
    assert prepared.shape == (1, 32, 32) and prepared.dtype == np.float32
    assert np.isfinite(prepared).all()


def test_top_is_capped_at_the_number_of_classes(run):
    (classes,) = predict(run / "checkpoint.npz", [run / "digit.png"], top=50)
    assert len(classes) == 10
    assert sum(p for _, p in classes) == pytest.approx(1.0, abs=1e-5)


def test_the_command_prints_one_line_per_image(run, capsys):
    image = str(run / "digit.png")
    assert main(["predict", str(run / "checkpoint.npz"), image, image, "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{image}: ") and line.count("%") == 2 for line in lines)


@pytest.mark.parametrize("arguments, words", [
    (["{run}/checkpoint.npz", "{run}/no_such.png"], "no image file"),
    (["{run}/digit.png", "{run}/digit.png"], "not a cnnlite checkpoint"),
    (["{run}/checkpoint.npz", "{run}/results.json"], "cannot identify image file"),
    (["{run}/checkpoint.npz", "{run}/digit.png", "--top", "0"], "--top"),
], ids=["missing image", "not a checkpoint", "not an image", "top 0"])
def test_a_bad_argument_is_one_line_and_exit_status_2(run, capsys, arguments, words):
    assert main(["predict", *(a.format(run=run) for a in arguments)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("cnnlite predict: error: ")
    assert words in error


def test_an_old_checkpoint_says_what_it_lacks(run, tmp_path, capsys):
    state = checkpoint.load(run / "checkpoint.npz")
    del state["inference"]
    checkpoint.save(tmp_path / "old.npz", state)
    with pytest.raises(CheckpointError, match="lacks inference .*preprocessing.*train again"):
        predict(tmp_path / "old.npz", [run / "digit.png"])
    assert main(["predict", str(tmp_path / "old.npz"), str(run / "digit.png")]) == 2
    assert "lacks inference" in capsys.readouterr().err
