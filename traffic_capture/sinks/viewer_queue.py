"""The queue that feeds the viewer window's process: apart from viewer.py, so that
multiprocessing is imported only with --view (and importable by name, as the spawned window
process unpickles it)."""

from __future__ import annotations

import multiprocessing.queues


class QuietQueue(multiprocessing.queues.Queue):  # type: ignore[type-arg]
    """A queue whose feeder thread says nothing when the window is gone (closed by the user):
    the capture goes on without it."""

    @staticmethod
    def _on_queue_feeder_error(e: Exception, obj: object) -> None:
        return None
