"""Read ahead: pull an iterator in a background thread so that its work (image decoding, person detection, crops)
overlaps with the pose model in the calling thread. No torch import.

This pays off because the heavy parts on both sides release the GIL (OpenCV decoding and warps, ONNX Runtime's
``run``). Items keep their order; an exception raised while producing an item is re-raised in the consumer at that
item's place; closing the consumer early stops the reader after the item it is working on.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


def prefetched(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` in order while a daemon thread produces up to ``depth`` of them ahead.

    The source iterator is advanced only by that thread, one item at a time (so a source that is not thread-safe,
    like a video capture, is still used by one thread at a time).
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[object, object]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # handed to the consumer, which re-raises it with its traceback
            put((_DONE, e))

    thread = threading.Thread(target=work, name="gtpt-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
