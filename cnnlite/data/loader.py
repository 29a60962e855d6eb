"""``DataLoader``: a dataset in shuffled mini-batches of ``cl.Tensor``s, read ahead in a thread.

    loader = DataLoader(dataset, batch_size=64, shuffle=True, seed=0)
    for epoch in range(10):
        for images, labels in loader:            # images (N, C, H, W) float32, labels (N,) int64
            ...

Shuffling draws one permutation per epoch from a single NumPy ``Generator``, so a seed fixes
the order of every epoch, and ``state_dict()`` / ``load_state_dict()`` save and restore that
generator (and the position inside the current epoch), so a training run resumed from a
checkpoint sees exactly the batches it would have seen without the interruption.

While the model works on one batch, a background thread already reads and transforms the
next ``prefetch`` batches (reading files and decoding images release the GIL, so this
overlaps with the NumPy work of the training step).
"""
from __future__ import annotations

import copy
import queue
import threading
import weakref
from typing import Callable

import numpy as np

from cnnlite.backend import check_device
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.tensor import tensor
from cnnlite.validate import boolean, integer

__all__ = ["DataLoader", "default_collate"]


def default_collate(samples):
    """Stack ``[(image, label), ...]`` into ``(images, labels)`` arrays.

    images: (N, C, H, W) float32 (values unchanged: uint8 pixels stay 0..255, use
    ``transforms.ToFloat`` to scale them), labels: (N,) int64.
    """
    images = np.stack([np.asarray(image) for image, _ in samples]).astype(np.float32, copy=False)
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    return images, labels


def _checked_device(device) -> str:
    """``device`` as cnnlite names it; an unknown one is reported as the loader's argument."""
    try:
        return check_device(device)
    except TypeError as error:
        raise ArgumentTypeError(f"DataLoader: {error}") from None
    except ValueError as error:
        raise OpError(f"DataLoader: {error}") from None


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images, labels)`` tensors.

    Parameters
    ----------
    dataset : Dataset
        Anything with ``len()`` and ``dataset[i] -> (image, label)``.
    batch_size : int
        At least 1 (an exact int: 2.5 is refused, not rounded).
    shuffle : bool
        Draw a new random order every epoch (from one generator seeded with ``seed``).
    seed : int >= 0, optional
        Fixes the shuffle order of every epoch; ``None`` draws a seed from the OS.
    drop_last : bool
        Leave out the last batch when it would be smaller than ``batch_size``.
    transform : callable, optional
        Applied to each image ``(C, H, W)`` after the dataset's own transform.
    device : ``"cpu"`` or ``"cuda"``
        Where the batch tensors are created.
    prefetch : int
        How many batches the background thread may read ahead; 0 reads each batch in the
        caller's thread when it is asked for (simplest to debug).
    collate_fn : callable, optional
        ``collate_fn([(image, label), ...]) -> tuple of arrays``; each array becomes a tensor
        on ``device``. Default: ``default_collate``.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False,
                 transform: Callable | None = None, device: str = "cpu", prefetch: int = 2,
                 collate_fn: Callable | None = None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise ArgumentTypeError(f"DataLoader: dataset must have len() and dataset[i], got "
                                    f"{type(dataset).__name__}")
        for name, function in (("transform", transform), ("collate_fn", collate_fn)):
            if function is not None and not callable(function):
                raise ArgumentTypeError(f"DataLoader: {name} must be callable (or None), got "
                                        f"{type(function).__name__}")
        self.dataset = dataset
        self.batch_size = integer("DataLoader", "batch_size", batch_size, minimum=1)
        self.shuffle = boolean("DataLoader", "shuffle", shuffle)
        self.drop_last = boolean("DataLoader", "drop_last", drop_last)
        self.prefetch = integer("DataLoader", "prefetch", prefetch, minimum=0)
        self.transform, self.device = transform, _checked_device(device)
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        if seed is not None:
            seed = integer("DataLoader", "seed", seed, minimum=0, maximum=None)
        self.generator = np.random.default_rng(seed)
        # The generator's state before the current epoch drew its order, and how many batches
        # of that epoch the caller has received: together they pin down the position exactly.
        self._epoch_start_state = None
        self._batches_served = 0
        self._skip_on_next_epoch = 0
        self._epochs_started = 0
        # Only a weak reference: an iterator abandoned with `break` must be free to be
        # garbage-collected, which stops its worker thread.
        self._active = None

    def __len__(self) -> int:
        """The number of batches per epoch."""
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self):
        self._close_active()
        self._epochs_started += 1
        self._epoch_start_state = copy.deepcopy(self.generator.bit_generator.state)
        self._batches_served = self._skip_on_next_epoch
        self._skip_on_next_epoch = 0
        order = self._epoch_order()
        batches = (self._load_batch(order[start:start + self.batch_size])
                   for start in range(self._batches_served * self.batch_size,
                                      len(self) * self.batch_size, self.batch_size))
        iterator = _BatchIterator(self, self._epochs_started, batches, self.prefetch)
        self._active = weakref.ref(iterator)
        return iterator

    def _close_active(self):
        """Starting a new epoch (or loading a state) abandons the epoch still running."""
        iterator = self._active() if self._active is not None else None
        if iterator is not None:
            iterator.close()

    def _epoch_order(self) -> np.ndarray:
        if self.shuffle:
            return self.generator.permutation(len(self.dataset))
        return np.arange(len(self.dataset))

    def _load_batch(self, indices):
        samples = []
        for index in indices:
            image, label = self.dataset[int(index)]
            if self.transform is not None:
                image = self.transform(image)
            samples.append((image, label))
        return tuple(tensor(array, device=self.device) for array in self.collate_fn(samples))

    def _batch_served(self):
        self._batches_served += 1

    def _epoch_ended(self, epoch: int):
        if epoch == self._epochs_started:
            self._epoch_start_state = None

    def state_dict(self) -> dict:
        """The shuffle generator's state and the position in the current epoch.

        Between epochs, ``batches_done`` is 0 and ``generator`` is the state the next epoch
        draws its order from. Inside an epoch, ``generator`` is the state from before this
        epoch's order was drawn and ``batches_done`` counts the batches already handed out, so
        that a loader restored with ``load_state_dict`` continues with the next batch.
        Random transforms keep their own generators and are not part of this state. The
        worker draws from them in sample order, so their states line up with this one at
        epoch boundaries; inside an epoch the worker may have run ``prefetch`` batches ahead.
        """
        if self._epoch_start_state is None:
            return {"generator": copy.deepcopy(self.generator.bit_generator.state),
                    "batches_done": 0}
        return {"generator": copy.deepcopy(self._epoch_start_state),
                "batches_done": self._batches_served}

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict()``: the next ``iter(loader)`` continues from there. Both
        entries are checked before either is set."""
        where = "DataLoader.load_state_dict"
        batches_done = np.asarray(state["batches_done"])
        batches_done = integer(where, "batches_done", batches_done.item()
                               if batches_done.ndim == 0 else batches_done, minimum=0,
                               maximum=len(self))
        probe = type(self.generator.bit_generator)()
        try:
            probe.state = copy.deepcopy(state["generator"])
        except (TypeError, ValueError, KeyError) as error:
            raise OpError(f"{where}: the saved generator state does not fit this loader's "
                          f"{type(probe).__name__} generator ({error})") from None
        self._close_active()
        self.generator.bit_generator.state = probe.state
        self._skip_on_next_epoch = batches_done

    def __repr__(self) -> str:
        return (f"DataLoader({len(self.dataset)} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device!r}, "
                f"prefetch={self.prefetch})")


class _BatchIterator:
    """One epoch of batches; with ``prefetch > 0`` they are produced by a worker thread.

    The worker fills a queue of at most ``prefetch`` batches and blocks when it is full. It
    sends every batch, then an end marker, or the exception that stopped it, which
    ``__next__`` raises again in the caller's thread. ``close()`` (also called when the
    iterator is garbage-collected after a ``break``) tells the worker to stop, empties the
    queue so that a worker blocked on a full queue wakes up, and waits for it to finish.
    """

    def __init__(self, loader: DataLoader, epoch: int, batches, prefetch: int):
        self._loader, self._epoch, self._batches = loader, epoch, batches
        self._closed = False
        self._queue = self._stop = self._worker = None
        if prefetch > 0:
            self._queue, self._stop = queue.Queue(maxsize=prefetch), threading.Event()
            # The worker gets only the queue, the event and the batch source, never `self`:
            # a thread holding `self` would keep an abandoned iterator alive forever.
            self._worker = threading.Thread(target=_produce,
                                            args=(batches, self._queue, self._stop),
                                            name="cnnlite-DataLoader", daemon=True)
            self._worker.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        kind, payload = self._next_item()
        if kind == "batch":
            self._loader._batch_served()
            return payload
        self.close()
        if kind == "error":
            raise payload
        raise StopIteration

    def _next_item(self):
        if self._queue is not None:
            return self._queue.get()
        try:
            return "batch", next(self._batches)
        except StopIteration:
            return "end", None
        except Exception as error:  # raised again by __next__, after closing
            return "error", error

    def close(self) -> None:
        """Stop reading ahead and release the worker thread (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        self._loader._epoch_ended(self._epoch)
        if self._worker is not None:
            self._stop.set()
            while self._worker.is_alive():
                _drain(self._queue)
                self._worker.join(timeout=0.01)

    def __del__(self):
        self.close()


def _produce(batches, batch_queue: queue.Queue, stop: threading.Event) -> None:
    """Worker thread: put every batch on the queue, then an end marker (or the error)."""
    try:
        for batch in batches:
            batch_queue.put(("batch", batch))
            if stop.is_set():
                return
        batch_queue.put(("end", None))
    except BaseException as error:  # re-raised in the caller's thread by __next__
        batch_queue.put(("error", error))


def _drain(batch_queue: queue.Queue) -> None:
    while True:
        try:
            batch_queue.get_nowait()
        except queue.Empty:
            return
