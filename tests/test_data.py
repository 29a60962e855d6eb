"""Specification of cnnlite.data: datasets read the real file formats, the loader batches,
shuffles reproducibly, resumes exactly and reads ahead safely, and transforms compute what
their docstrings say."""
import gzip
import hashlib
import pickle
import struct
import tarfile
import threading

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import cnnlite as cl
from cnnlite.data import (CIFAR10, CIFAR100, MNIST, DataLoader, Digits, ImageFolder, Subset,
                          TensorDataset, random_split, read_idx)
from cnnlite.data import transforms as T
from cnnlite.errors import OpError


def toy_dataset(n=10, shape=(1, 2, 2)):
    """Sample i is an image full of the value i, with label i: batches show their indices."""
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones(shape, np.float32)
    return TensorDataset(images, np.arange(n))


def labels_of(loader):
    return [batch[1].data.tolist() for batch in loader]


def loader_threads():
    return [t for t in threading.enumerate() if t.name == "cnnlite-DataLoader" and t.is_alive()]


# ---------------------------------------------------------------------------------------------
# Datasets in memory, subsets and splits

def test_tensor_dataset_returns_image_and_int_label_and_applies_transform():
    dataset = TensorDataset(np.zeros((3, 1, 2, 2)), np.array([4, 5, 6]),
                            transform=lambda image: image + 1)
    image, label = dataset[-1]
    assert len(dataset) == 3 and label == 6 and isinstance(label, int)
    np.testing.assert_array_equal(image, np.ones((1, 2, 2)))
    with pytest.raises(IndexError):
        dataset[3]


def test_tensor_dataset_rejects_mismatched_lengths_naming_the_shapes():
    with pytest.raises(OpError, match=r"TensorDataset.*\(3, 1, 2, 2\).*\(2,\)"):
        TensorDataset(np.zeros((3, 1, 2, 2)), np.array([0, 1]))


def test_tensor_dataset_accepts_tensors():
    dataset = TensorDataset(cl.tensor(np.ones((2, 1, 2, 2))), cl.tensor(np.array([0, 1])))
    assert isinstance(dataset[0][0], np.ndarray)


def test_subset_reads_the_chosen_indices_in_order():
    subset = Subset(toy_dataset(), [7, 2, 2])
    assert [subset[i][1] for i in range(len(subset))] == [7, 2, 2]


@pytest.mark.parametrize("lengths, sizes", [([6, 4], [6, 4]), ([0.5, 0.3, 0.2], [5, 3, 2]),
                                            ([1 / 3, 1 / 3, 1 / 3], [4, 3, 3])])
def test_random_split_partitions_the_dataset(lengths, sizes):
    parts = random_split(toy_dataset(10), lengths, seed=3)
    assert [len(part) for part in parts] == sizes
    labels = [part[i][1] for part in parts for i in range(len(part))]
    assert sorted(labels) == list(range(10))


def test_random_split_is_fixed_by_its_seed():
    def split(seed):
        return [list(part.indices) for part in random_split(toy_dataset(20), [10, 10], seed)]
    assert split(0) == split(0)
    assert split(0) != split(1)


def test_random_split_rejects_lengths_that_do_not_add_up():
    with pytest.raises(OpError, match="sum to the dataset's length 10"):
        random_split(toy_dataset(10), [5, 4])


# ---------------------------------------------------------------------------------------------
# Digits (scikit-learn's real 8x8 digits)

@pytest.fixture(scope="module")
def digits_split():
    return Digits(train=True), Digits(train=False)


def test_digits_split_sizes_shapes_and_range(digits_split):
    train, test = digits_split
    assert (len(train), len(test)) == (1438, 359)
    image, label = train[0]
    assert image.shape == (1, 8, 8) and image.dtype == np.float32
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert set(train.labels.tolist()) == set(range(10)) == set(test.labels.tolist())


def test_digits_train_and_test_together_are_the_whole_data_set(digits_split):
    from sklearn.datasets import load_digits
    train, test = digits_split
    ours = np.concatenate([train.images, test.images]).reshape(-1, 64) * 16
    assert sorted_rows(ours) == sorted_rows(load_digits().data)


def sorted_rows(pixels):
    """The images as a sorted list of integer rows: equal lists mean the same multiset."""
    return sorted(map(tuple, np.round(pixels).astype(int).tolist()))


def test_digits_split_is_deterministic_and_depends_on_the_seed(digits_split):
    train, _ = digits_split
    again = Digits(train=True, seed=0)
    np.testing.assert_array_equal(again.images, train.images)
    np.testing.assert_array_equal(again.labels, train.labels)
    assert not np.array_equal(Digits(train=True, seed=1).labels, train.labels)
    assert len(Digits(train=False, test_fraction=0.5)) == 898


# ---------------------------------------------------------------------------------------------
# MNIST (IDX files)

def idx_bytes(array, type_code=0x08):
    header = struct.pack(">HBB", 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist(folder, prefix, images, labels, gzipped):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images),
                        (f"{prefix}-labels-idx1-ubyte", labels)):
        content = idx_bytes(array)
        if gzipped:
            (folder / (name + ".gz")).write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)


@pytest.fixture
def mnist_arrays(rng):
    return (rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 5).astype(np.uint8))


@pytest.mark.parametrize("gzipped", [True, False])
def test_mnist_reads_idx_files(tmp_path, mnist_arrays, gzipped):
    images, labels = mnist_arrays
    write_mnist(tmp_path, "train", images, labels, gzipped)
    write_mnist(tmp_path, "t10k", images[:2], labels[:2], gzipped)
    train, test = MNIST(tmp_path), MNIST(tmp_path, train=False)
    assert (len(train), len(test)) == (5, 2)
    assert train.images.shape == (5, 1, 28, 28) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images[:, 0], images)
    np.testing.assert_array_equal(train.labels, labels)
    assert train[4][1] == labels[4]


def test_mnist_finds_files_in_the_mnist_raw_subfolder(tmp_path, mnist_arrays):
    write_mnist(tmp_path / "MNIST" / "raw", "t10k", *mnist_arrays, gzipped=True)
    assert len(MNIST(tmp_path, train=False)) == 5


def test_read_idx_reads_big_endian_multi_byte_values(tmp_path):
    values = np.arange(-6, 6, dtype=">i4").reshape(3, 4)
    (tmp_path / "values.idx").write_bytes(idx_bytes(values, type_code=0x0C))
    got = read_idx(tmp_path / "values.idx")
    np.testing.assert_array_equal(got, values)
    assert got.dtype == np.int32


def test_mnist_checks_the_magic_number(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    write_mnist(tmp_path, "train", images, labels, gzipped=False)
    # Images where labels should be: a valid IDX file, but magic 2051 instead of 2049.
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(images))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: magic number 2051.*2049"):
        MNIST(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04" + labels.tobytes())
    with pytest.raises(ValueError, match="not an IDX file"):
        MNIST(tmp_path)


def test_read_idx_reports_a_truncated_file(tmp_path, mnist_arrays):
    (tmp_path / "cut").write_bytes(idx_bytes(mnist_arrays[0])[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "cut")


def test_missing_mnist_files_say_what_where_and_how(tmp_path, mnist_arrays):
    write_mnist(tmp_path, "train", mnist_arrays[0], mnist_arrays[1], gzipped=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as error:
        MNIST(tmp_path)
    message = str(error.value)
    assert "train-labels-idx1-ubyte[.gz]" in message and "train-images" not in message
    assert str(tmp_path.resolve()) in message
    assert "download=True" in message and "http://yann.lecun.com/exdb/mnist/" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def serve_mnist(tmp_path, monkeypatch, mnist_arrays):
    """A local 'mirror' (file:// URLs) with the gzipped test files; returns their MD5s."""
    mirror = tmp_path / "mirror"
    write_mnist(mirror, "t10k", *mnist_arrays, gzipped=True)
    md5 = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in mirror.iterdir()}
    monkeypatch.setattr(MNIST, "mirrors", (mirror.as_uri() + "/",))
    monkeypatch.setattr(MNIST, "md5", md5)
    return md5


def test_mnist_download_fetches_and_verifies_the_files(tmp_path, monkeypatch, mnist_arrays):
    serve_mnist(tmp_path, monkeypatch, mnist_arrays)
    test = MNIST(tmp_path / "data", train=False, download=True)
    np.testing.assert_array_equal(test.labels, mnist_arrays[1])
    assert (tmp_path / "data" / "t10k-images-idx3-ubyte.gz").is_file()


def test_mnist_download_with_a_wrong_checksum_is_a_clear_error(tmp_path, monkeypatch,
                                                               mnist_arrays):
    md5 = serve_mnist(tmp_path, monkeypatch, mnist_arrays)
    md5["t10k-labels-idx1-ubyte.gz"] = "0" * 32
    with pytest.raises(FileNotFoundError, match="download failed.*wrong checksum"):
        MNIST(tmp_path / "data", train=False, download=True)
    assert not (tmp_path / "data" / "t10k-labels-idx1-ubyte.gz").exists()


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (pickled batches)

def write_batch(path, data, **lists):
    batch = {b"batch_label": b"testing", b"data": data}
    batch.update({key.encode(): values for key, values in lists.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=2))


def cifar_rows(rng, n):
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(folder, rng, per_batch=2):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(folder / name, cifar_rows(rng, per_batch),
                    labels=rng.integers(0, 10, per_batch).tolist())
    write_batch(folder / "batches.meta", None,
                label_names=[f"class{i}".encode() for i in range(10)])


def test_cifar10_reads_the_five_training_batches_as_rgb_planes(tmp_path, rng):
    write_cifar10(tmp_path / "cifar-10-batches-py", rng)
    train, test = CIFAR10(tmp_path), CIFAR10(tmp_path, train=False)
    assert (len(train), len(test)) == (10, 2)
    batch_3 = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_3").read_bytes(),
                           encoding="bytes")
    image, label = train[4]                      # the first image of data_batch_3
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8
    assert label == batch_3[b"labels"][0]
    row = batch_3[b"data"][0]
    assert image[0, 0, 1] == row[1] and image[1, 0, 0] == row[1024] and image[2, 31, 31] == row[-1]
    assert train.classes == [f"class{i}" for i in range(10)]


def test_cifar100_reads_fine_or_coarse_labels(tmp_path, rng):
    for name in ("train", "test"):
        write_batch(tmp_path / "cifar-100-python" / name, cifar_rows(rng, 3),
                    fine_labels=[97, 5, 42], coarse_labels=[19, 0, 7])
    assert CIFAR100(tmp_path).labels.tolist() == [97, 5, 42]
    assert CIFAR100(tmp_path, train=False, label_type="coarse").labels.tolist() == [19, 0, 7]


def test_cifar10_download_unpacks_the_checked_archive(tmp_path, monkeypatch, rng):
    write_cifar10(tmp_path / "build" / "cifar-10-batches-py", rng)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    assert len(CIFAR10(tmp_path / "data", train=False, download=True)) == 2


def test_missing_cifar_files_say_what_where_and_how(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as error:
        CIFAR10(tmp_path, train=False)
    message = str(error.value)
    assert "test_batch" in message and str(tmp_path / "cifar-10-batches-py") in message
    assert "download=True" in message and "cifar-10-python.tar.gz" in message
    monkeypatch.setattr(CIFAR100, "url", (tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(FileNotFoundError, match="CIFAR100: cannot find train.*download failed"):
        CIFAR100(tmp_path, download=True)


# ---------------------------------------------------------------------------------------------
# ImageFolder (PNG files, decoded by Pillow)

def write_png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_image_folder_labels_by_sorted_sub_folder_and_decodes_to_chw(tmp_path):
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = 200
    write_png(tmp_path / "dog" / "a.png", red)
    write_png(tmp_path / "cat" / "b.png", np.full((4, 6, 3), 7, np.uint8))
    write_png(tmp_path / "cat" / "nested" / "c.png", np.full((4, 6, 3), 9, np.uint8))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    dataset = ImageFolder(tmp_path)
    assert dataset.classes == ["cat", "dog"] and len(dataset) == 3
    assert [label for _, label in dataset.samples] == [0, 0, 1]
    image, label = dataset[2]
    assert label == 1 and image.shape == (3, 4, 6) and image.dtype == np.uint8
    assert image[:, 0, 0].tolist() == [200, 0, 0]
    assert ImageFolder(tmp_path, mode="L")[0][0].shape == (1, 4, 6)


def test_image_folder_without_class_folders_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sub-folders"):
        ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageFolder(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# DataLoader: batches

def test_loader_yields_float32_images_and_int64_labels_as_tensors():
    images, labels = next(iter(DataLoader(toy_dataset(), batch_size=4)))
    assert isinstance(images, cl.Tensor) and isinstance(labels, cl.Tensor)
    assert images.shape == (4, 1, 2, 2) and images.dtype == np.float32
    assert labels.dtype == np.int64 and labels.data.tolist() == [0, 1, 2, 3]
    assert images.device == "cpu"


@given(n=st.integers(1, 23), batch_size=st.integers(1, 8), drop_last=st.booleans(),
       prefetch=st.integers(0, 3))
def test_loader_batches_cover_the_dataset_in_order(n, batch_size, drop_last, prefetch):
    loader = DataLoader(toy_dataset(n), batch_size, drop_last=drop_last, prefetch=prefetch)
    batches = labels_of(loader)
    assert len(batches) == len(loader)
    assert all(len(batch) == batch_size for batch in batches[:-1])
    served = [label for batch in batches for label in batch]
    expected = n - n % batch_size if drop_last else n
    assert served == list(range(expected))


def test_loader_applies_its_transform_and_collate_fn():
    def collate(samples):
        return (np.stack([image for image, _ in samples]).astype(np.float64),
                np.array([label for _, label in samples]) * 10)
    images, labels = next(iter(DataLoader(toy_dataset(), 2, transform=lambda x: x + 0.5,
                                          collate_fn=collate)))
    assert images.dtype == np.float64 and images.data[1, 0, 0, 0] == 1.5
    assert labels.data.tolist() == [0, 10]


@pytest.mark.skipif(not cl.cuda.is_available(), reason="needs cupy and a CUDA GPU")
def test_loader_creates_batches_on_the_gpu():
    images, labels = next(iter(DataLoader(toy_dataset(), 4, device="cuda")))
    assert images.device == labels.device == "cuda"
    assert labels.data.get().tolist() == [0, 1, 2, 3]


def test_loader_rejects_a_bad_batch_size():
    with pytest.raises(OpError, match="DataLoader: batch_size must be >= 1, got 0"):
        DataLoader(toy_dataset(), batch_size=0)


# ---------------------------------------------------------------------------------------------
# DataLoader: reproducible shuffling and exact resumption

def test_seeded_shuffle_repeats_across_runs_and_changes_between_epochs():
    def two_epochs(seed):
        loader = DataLoader(toy_dataset(12), 4, shuffle=True, seed=seed)
        return [sum(labels_of(loader), []) for _ in range(2)]
    first, second = two_epochs(5)
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second
    assert two_epochs(5) == [first, second]
    assert two_epochs(6) != [first, second]


def test_state_dict_between_epochs_restores_the_next_epoch_order():
    loader = DataLoader(toy_dataset(12), 5, shuffle=True, seed=0)
    labels_of(loader)
    state = loader.state_dict()
    expected = labels_of(loader)
    restored = DataLoader(toy_dataset(12), 5, shuffle=True, seed=99)
    restored.load_state_dict(state)
    assert labels_of(restored) == expected


def test_state_dict_inside_an_epoch_resumes_with_the_next_batch():
    loader = DataLoader(toy_dataset(20), 3, shuffle=True, seed=1)
    iterator = iter(loader)
    [next(iterator) for _ in range(2)]
    state = loader.state_dict()
    assert state["batches_done"] == 2
    rest_of_epoch = [batch[1].data.tolist() for batch in iterator]
    next_epoch = labels_of(loader)
    restored = DataLoader(toy_dataset(20), 3, shuffle=True, seed=2)
    restored.load_state_dict(state)
    assert labels_of(restored) == rest_of_epoch
    assert labels_of(restored) == next_epoch


def test_an_abandoned_epoch_counts_as_finished():
    loader = DataLoader(toy_dataset(20), 3, shuffle=True, seed=1)
    for _ in loader:
        break
    assert loader.state_dict()["batches_done"] == 0


# ---------------------------------------------------------------------------------------------
# DataLoader: background prefetch

class FailingDataset(TensorDataset):
    def __init__(self, n=12, fail_at=7):
        base = toy_dataset(n)
        super().__init__(base.images, base.labels)
        self.fail_at, self.threads = fail_at, set()

    def __getitem__(self, index):
        self.threads.add(threading.current_thread().name)
        if index == self.fail_at:
            raise KeyError(f"sample {index} is corrupt")
        return super().__getitem__(index)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_an_error_while_reading_is_raised_in_the_caller(prefetch):
    dataset = FailingDataset(fail_at=7)
    iterator = iter(DataLoader(dataset, batch_size=2, prefetch=prefetch))
    assert [next(iterator)[1].data.tolist() for _ in range(3)] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(KeyError, match="sample 7 is corrupt"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)
    assert ("cnnlite-DataLoader" in dataset.threads) == (prefetch > 0)
    assert not loader_threads()


def test_stopping_early_stops_the_worker_and_bounds_the_read_ahead():
    class Counting(TensorDataset):
        reads = 0

        def __getitem__(self, index):
            Counting.reads += 1
            return super().__getitem__(index)

    base = toy_dataset(100)
    loader = DataLoader(Counting(base.images, base.labels), batch_size=2, prefetch=3)
    for batch_number, _ in enumerate(loader):
        if batch_number == 1:
            break
    assert not loader_threads()
    # 2 batches consumed; at most 3 queued and 1 being built behind them.
    assert Counting.reads <= (2 + 3 + 1) * 2


def test_starting_a_new_epoch_closes_the_previous_iterator():
    loader = DataLoader(toy_dataset(40), 2, prefetch=2)
    first = iter(loader)
    next(first)
    second = iter(loader)
    with pytest.raises(StopIteration):
        next(first)
    assert next(second)[1].data.tolist() == [0, 1]


# ---------------------------------------------------------------------------------------------
# Transforms

def test_caffe_transform_on_a_known_pixel():
    rgb = np.array([200, 100, 50], np.uint8).reshape(3, 1, 1)
    out = T.CaffeTransform()(rgb)                # 0.04 * ((50, 100, 200) - (104, 117, 124))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [-2.16, -0.68, 3.04], rtol=1e-6)
    bgr_out = T.CaffeTransform(input_order="bgr")(rgb)
    np.testing.assert_allclose(bgr_out.ravel(), [3.84, -0.68, -2.96], rtol=1e-6)


def test_caffe_transform_needs_three_channels():
    with pytest.raises(OpError, match=r"CaffeTransform.*\(1, 4, 4\)"):
        T.CaffeTransform()(np.zeros((1, 4, 4)))


def test_to_float_and_normalize(rng):
    image = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    scaled = T.ToFloat()(image)
    assert scaled.dtype == np.float32 and T.ToFloat()(np.full((1, 1, 1), 255, np.uint8)) == 1.0
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    expected = (image / 255.0 - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))
    np.testing.assert_allclose(T.Compose([T.ToFloat(), T.Normalize(mean, std)])(image),
                               expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(OpError, match=r"Normalize: mean has 3 values.*\(2, 4, 5\)"):
        T.Normalize(mean, std)(np.zeros((2, 4, 5)))


def test_horizontal_flip_mirrors_with_probability_p(rng):
    image = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0, rng)(image), image[:, :, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0, rng)(image), image)

    def flips(seed):
        flip = T.RandomHorizontalFlip(0.5, np.random.default_rng(seed))
        return [flip(image)[0, 0, 0] == 3 for _ in range(200)]
    assert flips(0) == flips(0) and 70 < sum(flips(0)) < 130


def test_random_crop_with_padding_takes_windows_of_the_zero_padded_image(rng):
    image = rng.integers(1, 256, (2, 5, 5), dtype=np.uint8)
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2)))
    crop = T.RandomCrop(5, padding=2, rng=np.random.default_rng(0))
    corners = set()
    for _ in range(300):
        out = crop(image)
        assert out.shape == (2, 5, 5)
        matches = [(top, left) for top in range(5) for left in range(5)
                   if np.array_equal(out, padded[:, top:top + 5, left:left + 5])]
        assert len(matches) == 1
        corners.add(matches[0])
    assert len(corners) == 25
    with pytest.raises(OpError, match=r"RandomCrop: crop \(10, 10\) does not fit"):
        T.RandomCrop(10, padding=2)(image)


def test_center_crop_takes_the_middle():
    image = np.arange(2 * 6 * 7).reshape(2, 6, 7)
    np.testing.assert_array_equal(T.CenterCrop((2, 3))(image), image[:, 2:4, 2:5])


@pytest.mark.parametrize("shape, expected", [((3, 20, 30), (3, 144, 216)),
                                             ((1, 300, 200), (1, 216, 144)),
                                             ((3, 144, 144), (3, 144, 144))])
def test_resize_short_side_shapes(shape, expected):
    assert T.ResizeShortSide(144)(np.zeros(shape, np.uint8)).shape == expected


@given(in_h=st.integers(1, 9), in_w=st.integers(1, 9), out_h=st.integers(1, 12),
       out_w=st.integers(1, 12), seed=st.integers(0, 100))
def test_resize_bilinear_matches_pytorch(in_h, in_w, out_h, out_w, seed):
    image = np.random.default_rng(seed).standard_normal((2, in_h, in_w))
    expected = torch.nn.functional.interpolate(torch.tensor(image[None]), size=(out_h, out_w),
                                               mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(T.resize_bilinear(image, (out_h, out_w)), expected,
                               rtol=1e-10, atol=1e-12)


def test_transforms_reject_images_without_channel_axis():
    with pytest.raises(OpError, match=r"RandomHorizontalFlip: expected an image of shape "
                                      r"\(C, H, W\), got shape \(4, 4\)"):
        T.RandomHorizontalFlip()(np.zeros((4, 4)))


def test_caffenet128_pipeline_end_to_end():
    rng = np.random.default_rng(0)
    pipeline = T.Compose([T.ResizeShortSide(144), T.RandomCrop(128, rng=rng),
                          T.RandomHorizontalFlip(rng=rng), T.CaffeTransform()])
    # An RGB picture of the mean colour itself: every output value is 0.
    mean_colour = np.array([124, 117, 104], np.uint8).reshape(3, 1, 1)
    picture = np.tile(mean_colour, (1, 150, 200))
    out = pipeline(picture)
    assert out.shape == (3, 128, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.0, atol=1e-5)
