"""The next chunk of a capture file read in a thread while this one is counted: reading and
walking release the interpreter lock, so that runs on the other core."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from queue import Empty, Queue
from typing import Any, TypeVar

T = TypeVar("T")
READ_AHEAD = 1  # chunks read before the consumer asks for them


def in_thread(items: Iterator[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """The items of `items`, made in a thread up to `depth` ahead of the consumer.

    Its errors are raised here, in order; when the consumer stops early, the thread stops too.
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stopped = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stopped.is_set():
                    return
                queue.put((True, item))
            queue.put((False, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            queue.put((False, error))

    thread = threading.Thread(target=produce, name="capture-file-reader", daemon=True)
    thread.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stopped.set()
        while thread.is_alive():  # unblock a put() waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.01)
        thread.join()
