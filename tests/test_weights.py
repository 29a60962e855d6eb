"""Weights files: safetensors round trips exactly, PyTorch .pth files load through the weights-only
unpickler (and nothing hidden in one runs), writes are atomic, and weights of another
architecture are refused with every problem listed and the model left as it was."""
import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnnlite import io, nn
from cnnlite.io import WeightsError
from cnnlite.models.lenet import lenet5
from cnnlite.nn.state_dict import StateDictError

REPO_ROOT = Path(__file__).resolve().parents[1]


def small_net():
    """Conv, batch norm (with its int64 0-d num_batches_tracked) and a classifier."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def trained_a_little(model):
    """Running statistics and the batch counter moved away from their initial values."""
    model.train()
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    model(x)
    model(x)
    return model


def assert_same_state(got, expected):
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        assert got[key].shape == expected[key].shape, key
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


# --- safetensors round trips ------------------------------------------------------------------

dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8,
                          np.bool_])
named_arrays = st.dictionaries(
    st.text(alphabet="abc.0123_", min_size=1, max_size=8),
    st.tuples(dtypes, st.lists(st.integers(0, 3), max_size=4)).map(
        lambda spec: (np.arange(int(np.prod(spec[1])), dtype=np.float64)
                      .reshape(spec[1]) * 1.25 - 3).astype(spec[0])),
    max_size=5)


@given(named_arrays)
def test_any_arrays_round_trip_with_their_dtypes_and_shapes(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    io.save_weights(state, path)
    assert_same_state(io.load_weights(path), state)


def test_a_0d_int64_buffer_stays_a_0d_int64(tmp_path):
    io.save_weights({"bn.num_batches_tracked": np.array(7, dtype=np.int64)},
                    tmp_path / "w.safetensors")
    loaded = io.load_weights(tmp_path / "w.safetensors")["bn.num_batches_tracked"]
    assert loaded.shape == () and loaded.dtype == np.int64 and loaded == 7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_model_round_trips_into_a_fresh_copy(tmp_path, dtype):
    model = trained_a_little(small_net().to(dtype=dtype))
    io.save_weights(model, tmp_path / "net.safetensors")
    fresh = small_net().to(dtype=dtype)
    report = io.load_weights_into(fresh, tmp_path / "net.safetensors")
    assert report.ok
    assert_same_state(fresh.state_dict(), model.state_dict())
    assert fresh.state_dict()["1.num_batches_tracked"] == 2


def test_tensors_of_cnnlite_and_torch_save_as_their_arrays(tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    state = {"mine": nn.Parameter(weight), "torch": torch.tensor(weight, requires_grad=True)}
    io.save_weights(state, tmp_path / "w.safetensors")
    loaded = io.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(loaded["mine"], weight)
    np.testing.assert_array_equal(loaded["torch"], weight)


def test_metadata_is_stored_in_the_header(tmp_path):
    io.save_weights(lenet5(), tmp_path / "w.safetensors", metadata={"model": "lenet5"})
    assert io.read_metadata(tmp_path / "w.safetensors") == {"model": "lenet5"}
    io.save_weights(lenet5(), tmp_path / "plain.safetensors")
    assert io.read_metadata(tmp_path / "plain.safetensors") == {}


def test_a_safetensors_file_under_another_name_is_recognised_by_its_header(tmp_path):
    io.save_weights({"w": np.ones(3, np.float32)}, tmp_path / "weights.data")
    np.testing.assert_array_equal(io.load_weights(tmp_path / "weights.data")["w"], np.ones(3))


@pytest.mark.parametrize("state, metadata, fragment", [
    ({"w": np.array(["a", "b"])}, None, "real numbers"),
    ({"w": np.ones(2, dtype=complex)}, None, "real numbers"),
    ({3: np.ones(2)}, None, "keys must be strings"),
    ({"w": np.ones(2)}, {"epochs": 3}, "metadata maps strings to strings"),
])
def test_unsavable_weights_are_refused_and_leave_the_old_file(tmp_path, state, metadata,
                                                              fragment):
    path = tmp_path / "w.safetensors"
    io.save_weights({"old": np.arange(3.0)}, path)
    with pytest.raises(WeightsError, match=fragment):
        io.save_weights(state, path, metadata=metadata)
    np.testing.assert_array_equal(io.load_weights(path)["old"], np.arange(3.0))


# --- atomic writes ----------------------------------------------------------------------------

def test_a_failure_before_the_rename_keeps_the_old_file_and_leaves_no_temporary(
        tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    io.save_weights({"w": np.ones(100)}, path)
    before = path.read_bytes()

    def failing_fsync(fd):  # the new contents are in the temporary file when this fails
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        io.save_weights({"w": np.zeros(100)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_a_process_killed_mid_write_leaves_the_old_weights_readable(tmp_path):
    path = tmp_path / "w.safetensors"
    io.save_weights({"w": np.ones(1000)}, path)
    crash = textwrap.dedent(f"""
        import os, numpy as np
        from cnnlite import io
        def die(fd):
            os._exit(3)                       # no cleanup, no exception handlers: a crash
        os.fsync = die
        io.save_weights({{"w": np.zeros(1000)}}, {str(path)!r})
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", crash], env=env, capture_output=True)
    assert result.returncode == 3, result.stderr.decode()
    np.testing.assert_array_equal(io.load_weights(path)["w"], np.ones(1000))


# --- PyTorch files ----------------------------------------------------------------------------

def torch_small_net():
    """The PyTorch twin of small_net: the same keys and shapes."""
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: {"state_dict": s, "epoch": 3},
                                  lambda s: {"model": s, "optimizer": {}}],
                         ids=["plain", "under state_dict", "under model"])
def test_a_torch_state_dict_loads_with_its_values_and_dtypes(tmp_path, wrap):
    torch.manual_seed(0)
    reference = torch_small_net()
    reference(torch.randn(2, 1, 8, 8))  # moves the running statistics and the counter
    torch.save(wrap(reference.state_dict()), tmp_path / "net.pth")
    model = small_net()
    assert io.load_weights_into(model, tmp_path / "net.pth").ok
    expected = {key: value.numpy() for key, value in reference.state_dict().items()}
    assert_same_state(model.state_dict(), expected)


def test_bfloat16_tensors_are_widened_to_float32(tmp_path):
    values = torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16)
    torch.save({"w": values}, tmp_path / "w.pt")
    loaded = io.load_weights(tmp_path / "w.pt")["w"]
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, [1.5, -2.0, 3.0])


class CreatesAFileWhenUnpickled:
    """A pickle payload: unpickling calls ``open(marker, "w")``. Any function could stand here."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pth_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    bomb = tmp_path / "bomb.pth"
    torch.save({"w": torch.zeros(2), "payload": CreatesAFileWhenUnpickled(marker)}, bomb)
    with pytest.raises(WeightsError, match="refused") as info:
        io.load_weights(bomb)
    assert str(bomb) in str(info.value)
    assert not marker.exists()
    # The payload is live: an unrestricted unpickler does run it.
    torch.load(bomb, weights_only=False)
    assert marker.exists()


def test_without_torch_a_pth_asks_for_torch_or_safetensors(tmp_path, monkeypatch):
    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(WeightsError, match="needs torch.*safetensors") as info:
        io.load_weights(tmp_path / "w.pth")
    assert str(tmp_path / "w.pth") in str(info.value)


@pytest.mark.parametrize("content, fragment", [
    ([torch.zeros(2)], "holds a list"),
    ({"epoch": 3, "weights": [1, 2]}, "no state dict found"),
])
def test_a_pth_without_a_state_dict_says_what_it_holds(tmp_path, content, fragment):
    torch.save(content, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=fragment):
        io.load_weights(tmp_path / "other.pth")


# --- broken files -----------------------------------------------------------------------------

def saved_bytes(tmp_path, suffix):
    path = tmp_path / f"good{suffix}"
    if suffix == ".pth":
        torch.save({"w": torch.arange(2000.0)}, path)
    else:
        io.save_weights({"w": np.arange(2000.0)}, path)
    return path.read_bytes()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_file_raises_a_clear_error_naming_the_file(tmp_path, suffix, damage):
    content = saved_bytes(tmp_path, suffix)
    content = {"truncated": content[: len(content) // 2],
               "garbage": b"these are not weights\n" * 20, "empty": b""}[damage]
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="truncated or damaged") as info:
        io.load_weights(path)
    assert str(path) in str(info.value)


def test_a_damaged_pickle_is_called_damaged_not_refused(tmp_path):
    path = tmp_path / "bad_opcode.pth"
    path.write_bytes(b"\x80\x02\x11")  # pickle protocol 2, then an opcode that does not exist
    with pytest.raises(WeightsError) as info:
        io.load_weights(path)
    message = str(info.value)
    assert "truncated or damaged" in message and "Unsupported operand 17" in message
    assert "refused" not in message and "weights_only" not in message


def test_a_file_that_is_no_weights_file_is_named(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not weights")
    with pytest.raises(WeightsError, match="not a weights file") as info:
        io.load_weights(path)
    assert str(path) in str(info.value)


def test_a_missing_file_and_a_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        io.load_weights(tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError, match="a folder"):
        io.load_weights(tmp_path)


# --- weights of another architecture ----------------------------------------------------------

def parameters_of(model):
    return OrderedDict((name, value.copy()) for name, value in model.state_dict().items())


def test_weights_of_another_configuration_list_the_shape_mismatches_and_change_nothing(
        tmp_path):
    io.save_weights(lenet5(num_classes=10, in_channels=1), tmp_path / "digits.safetensors")
    model = lenet5(num_classes=5, in_channels=3)
    before = parameters_of(model)
    with pytest.raises(StateDictError) as info:
        io.load_weights_into(model, tmp_path / "digits.safetensors")
    message = str(info.value)
    assert str(tmp_path / "digits.safetensors") in message
    for key, shapes in [("features.0.weight", "model (6, 3, 5, 5), given (6, 1, 5, 5)"),
                        ("classifier.4.weight", "model (5, 84), given (10, 84)"),
                        ("classifier.4.bias", "model (5,), given (10,)")]:
        assert f"{key} ({shapes})" in message
    assert_same_state(model.state_dict(), before)


def test_weights_of_another_architecture_list_missing_and_unexpected_keys_and_change_nothing(
        tmp_path):
    io.save_weights(small_net(), tmp_path / "sequential.safetensors")
    model = lenet5()
    before = parameters_of(model)
    with pytest.raises(StateDictError) as info:
        io.load_weights_into(model, tmp_path / "sequential.safetensors")
    message = str(info.value)
    assert "missing keys: features.0.weight, features.0.bias, features.3.weight" in message
    assert "unexpected keys: 0.bias, 0.weight, 1.bias, 1.num_batches_tracked" in message
    assert_same_state(model.state_dict(), before)


def test_not_strict_loads_the_matching_weights_and_reports_the_rest(tmp_path):
    source = lenet5(num_classes=10)
    io.save_weights(source, tmp_path / "digits.safetensors")
    model = lenet5(num_classes=5)
    report = io.load_weights_into(model, tmp_path / "digits.safetensors", strict=False)
    assert [key for key, _, _ in report.mismatched_keys] == ["classifier.4.weight",
                                                            "classifier.4.bias"]
    np.testing.assert_array_equal(model.state_dict()["features.0.weight"],
                                  source.state_dict()["features.0.weight"])


def test_a_state_dict_loads_as_well_as_a_file():
    source = trained_a_little(small_net())
    model = small_net()
    assert io.load_weights_into(model, source.state_dict()).ok
    assert_same_state(model.state_dict(), source.state_dict())
