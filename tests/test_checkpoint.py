"""Checkpoints: a nested training state survives the round trip through an .npz file exactly;
writes are atomic; broken or mismatched files give clear errors and change nothing."""
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnlite import checkpoint, nn, optim
from cnnlite.checkpoint import CheckpointError
from cnnlite.train import History
from cnnlite.train.resume import load_training_state, save_training_state, training_state
from cnnlite.train.state import random_generators

REPO_ROOT = Path(__file__).resolve().parents[1]

# --- nested structures and their exact comparison ---------------------------------------------

arrays = st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]).flatmap(
    lambda dtype: st.lists(st.integers(0, 3), max_size=3).map(
        lambda shape: (np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) * 0.7)
        .astype(dtype)))
leaves = st.one_of(
    arrays, st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True), st.booleans(),
    st.none(), st.text(max_size=5), st.sampled_from([np.float32(1.5), np.float64(2.5),
                                                      np.int64(7), np.bool_(True)]))
keys = st.text(alphabet="abc._-", min_size=1, max_size=4) | st.integers(0, 5)
nested = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
    | st.dictionaries(keys, children, max_size=3),
    max_leaves=12)


def assert_same(a, b, path="state"):
    """Equal values *and* equal types, recursively (0-d arrays must not turn into floats)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}/{i}")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@given(st.dictionaries(keys, nested, max_size=4))
def test_any_nested_state_round_trips_exactly(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("ckpt") / "state.npz"
    checkpoint.save(path, state)
    assert_same(checkpoint.load(path), state)


def test_paths_become_entry_names_and_numbers_0d_arrays(tmp_path):
    path = tmp_path / "c.npz"
    state = {"model": {"features.0.weight": np.ones((6, 1, 5, 5), np.float32)},
             "optim": {"state": {3: {"momentum_buffer": np.zeros(4)}}}, "epoch": 2}
    checkpoint.save(path, state)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"model/features.0.weight",
                                      "optim/state/3/momentum_buffer", "epoch", "__meta__"}
        assert archive["epoch"].shape == () and archive["epoch"] == 2
    assert checkpoint.load(path)["optim"]["state"][3]["momentum_buffer"].shape == (4,)


def test_a_restored_random_generator_continues_the_same_stream(tmp_path):
    generator = np.random.default_rng(42)
    generator.random(5)
    checkpoint.save(tmp_path / "rng.npz", {"rng": generator.bit_generator.state})
    expected = generator.random(3)
    restored = np.random.default_rng(0)
    restored.bit_generator.state = checkpoint.load(tmp_path / "rng.npz")["rng"]
    np.testing.assert_array_equal(restored.random(3), expected)


@pytest.mark.parametrize("bad_state, fragment", [
    ({"a/b": 1}, "'/'"),
    ({"__meta__": 1}, "__meta__"),
    ({"model": {"": 1}}, "empty"),
    ({"x": object()}, "type object"),
    ({"x": np.array([None, 1], dtype=object)}, "pickle"),
    ({"x": {1: 0, "1": 0}}, "same name"),
])
def test_unsavable_states_are_refused_and_leave_the_old_file(tmp_path, bad_state, fragment):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"good": np.arange(3)})
    with pytest.raises(CheckpointError, match=fragment):
        checkpoint.save(path, bad_state)
    np.testing.assert_array_equal(checkpoint.load(path)["good"], np.arange(3))
    assert os.listdir(tmp_path) == ["c.npz"]


# --- atomic writes ----------------------------------------------------------------------------

def test_a_failure_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path,
                                                                           monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"epoch": 1, "w": np.ones(100)})
    before = path.read_bytes()

    def write_half_then_fail(file, *args, **kwargs):
        file.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"epoch": 2, "w": np.zeros(100)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_a_failure_at_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"epoch": 1})
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        checkpoint.save(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_a_process_killed_mid_write_never_leaves_a_half_written_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"epoch": 1, "w": np.ones(1000)})
    before = path.read_bytes()
    crash = textwrap.dedent(f"""
        import os, numpy as np
        from cnnlite import checkpoint
        def write_and_die(file, *args, **kwargs):
            file.write(b"PK" + b"x" * 5000)
            file.flush()
            os._exit(3)                       # no cleanup, no exception handlers: a crash
        np.savez = write_and_die
        checkpoint.save({str(path)!r}, {{"epoch": 2, "w": np.zeros(1000)}})
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", crash], env=env, capture_output=True)
    assert result.returncode == 3, result.stderr.decode()
    assert path.read_bytes() == before
    assert checkpoint.load(path)["epoch"] == 1


def test_the_folder_is_created_and_the_file_is_readable_by_others(tmp_path):
    path = tmp_path / "new" / "folder" / "c.npz"
    checkpoint.save(path, {"epoch": 1})
    assert checkpoint.load(path) == {"epoch": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --- broken files -----------------------------------------------------------------------------

@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.npz"
    checkpoint.save(path, {"model": {"w": np.arange(5000, dtype=np.float64)}, "epoch": 3})
    return path


@pytest.mark.parametrize("damage, fragment", [
    ("truncate", "corrupted or truncated"), ("flip_bytes", "corrupted or truncated"),
    ("garbage", "not a cnnlite checkpoint, or a damaged one"),
    ("empty", "not a cnnlite checkpoint, or a damaged one")],
    ids=["truncate", "flip_bytes", "garbage", "empty"])
def test_a_damaged_file_raises_a_clear_error_naming_the_file(good_file, damage, fragment):
    content = good_file.read_bytes()
    if damage == "truncate":
        content = content[: len(content) // 2]
    elif damage == "flip_bytes":
        middle = len(content) // 2
        content = content[:middle] + bytes(b ^ 0xFF for b in content[middle:middle + 64]) \
            + content[middle + 64:]
    elif damage == "garbage":
        content = b"this is not a checkpoint" * 10
    else:
        content = b""
    good_file.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment) as info:
        checkpoint.load(good_file)
    assert str(good_file) in str(info.value)
    assert good_file.read_bytes() == content  # loading never writes


@pytest.mark.parametrize("content", [b"this is not a checkpoint" * 10,
                                     b"\x80\x04\x95 looks like a pickle"],
                         ids=["text", "pickle-like"])
def test_a_file_that_is_no_archive_is_not_explained_in_numpys_pickle_terms(tmp_path, content):
    """NumPy takes any file that is neither .npy nor .npz for a pickle; the user should not
    be told about allow_pickle, only that this is no checkpoint."""
    path = tmp_path / "notes.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a cnnlite checkpoint")
    assert "pickle" not in message


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        checkpoint.load(tmp_path / "nothing.npz")


def test_a_plain_npz_is_not_taken_for_a_checkpoint(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(CheckpointError, match="not a cnnlite checkpoint"):
        checkpoint.load(tmp_path / "plain.npz")


def test_a_newer_format_version_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 2)
    checkpoint.save(tmp_path / "future.npz", {"epoch": 1})
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 1)
    with pytest.raises(CheckpointError, match="version 2.*reads version 1"):
        checkpoint.load(tmp_path / "future.npz")


# --- checkpoints that do not fit the model ----------------------------------------------------

def small_model(hidden=4):
    return nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def test_check_state_dict_names_missing_unexpected_and_mis_shaped_keys():
    expected = small_model(4).state_dict()
    loaded = small_model(5).state_dict()
    loaded["extra.weight"] = np.zeros(1)
    del loaded["2.bias"]
    with pytest.raises(CheckpointError) as info:
        checkpoint.check_state_dict(expected, loaded, "some/file.npz")
    message = str(info.value)
    assert "some/file.npz" in message
    assert "missing keys: 2.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "0.weight: checkpoint (5, 3) vs model (4, 3)" in message
    assert "2.weight: checkpoint (2, 5) vs model (2, 4)" in message


class _Batches(list):
    """A list of batches standing in for a loader (it has no state of its own)."""


def _training_objects(hidden):
    model = small_model(hidden)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer


def _save_trained_state(path, hidden):
    model, optimizer = _training_objects(hidden)
    for param in model.parameters():
        param.grad = np.ones_like(param.data)
    optimizer.step()
    save_training_state(path, model, optimizer, None, _Batches(), random_generators(),
                        History(), epoch=1, step=10)


def test_resuming_a_mismatched_checkpoint_changes_neither_the_model_nor_the_file(tmp_path):
    path = tmp_path / "other.npz"
    _save_trained_state(path, hidden=5)
    file_before = path.read_bytes()
    model, optimizer = _training_objects(hidden=4)
    weights_before = model.state_dict()
    with pytest.raises(CheckpointError, match="does not fit the model") as info:
        load_training_state(path, model, optimizer, None, _Batches(), random_generators(),
                            History())
    assert "0.weight: checkpoint (5, 3) vs model (4, 3)" in str(info.value)
    assert str(path) in str(info.value)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights_before[key])
    assert optimizer.state == {}
    assert path.read_bytes() == file_before


def test_a_part_that_fails_to_load_rolls_back_the_parts_already_loaded(tmp_path):
    path = tmp_path / "broken_optimizer.npz"
    _save_trained_state(path, hidden=4)
    state = checkpoint.load(path)
    state["optimizer"]["state.0.momentum_buffer"] = np.zeros((7, 7))
    checkpoint.save(path, state)
    model, optimizer = _training_objects(hidden=4)
    weights_before = model.state_dict()
    with pytest.raises(CheckpointError, match="could not restore.*nothing was changed"):
        load_training_state(path, model, optimizer, None, _Batches(), random_generators(),
                            History())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights_before[key])
    assert optimizer.state == {}


def test_a_checkpoint_from_another_optimizer_is_refused_before_loading(tmp_path):
    path = tmp_path / "sgd.npz"
    _save_trained_state(path, hidden=4)
    model = small_model(4)
    adam = optim.Adam(model.parameters())
    with pytest.raises(CheckpointError, match="optimizer SGD, but this run has Adam"):
        load_training_state(path, model, adam, None, _Batches(), random_generators(),
                            History())


def test_a_training_state_holds_every_part():
    model, optimizer = _training_objects(4)
    state = training_state(model, optimizer, None, _Batches(), random_generators(), History(),
                           epoch=2, step=20)
    assert list(state) == ["info", "model", "optimizer", "schedule", "loader", "random",
                           "progress", "history"]
    assert state["progress"] == {"epoch": 2, "step": 20}


def test_the_inference_part_is_saved_when_given_and_resuming_ignores_it(tmp_path):
    """``cnnlite train`` adds what prediction needs; a resume reads only the training parts,
    so checkpoints with and without it both continue."""
    inference = {"model": "lenet5", "num_classes": 10, "in_channels": 1,
                 "preprocessing": {"dataset": "digits", "mean": [0.3], "std": [0.4]}}
    for name, extra in (("with.npz", inference), ("without.npz", None)):
        model, optimizer = _training_objects(4)
        save_training_state(tmp_path / name, model, optimizer, None, _Batches(),
                            random_generators(), History(), epoch=3, step=30, inference=extra)
        state = checkpoint.load(tmp_path / name)
        assert state.get("inference") == extra
        model, optimizer = _training_objects(4)
        assert load_training_state(tmp_path / name, model, optimizer, None, _Batches(),
                                   random_generators(), History()) == (3, 30)
