"""The tkinter window: the latest packets, the current window's clients, pause/resume, a client
filter and a Close button that ends the window only (never the capture).

`run(model, feed)` owns the calling thread until the window is closed; every POLL_MS it asks
`feed` for news (it applies them to the model and says whether to go on) and redraws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from traffic_capture.viewer.model import ViewModel

if TYPE_CHECKING:  # tkinter is imported when a window opens, not with this module
    import tkinter
    from tkinter import ttk

POLL_MS = 200
PACKET_COLUMNS = (("time", "time", 110), ("direction", "dir", 40), ("client", "client", 200),
                  ("class", "class", 55), ("bytes", "IP bytes", 75), ("preview", "preview", 520))
CLIENT_COLUMNS = (("client", "client", 260), ("in", "bytes in", 110),
                  ("out", "bytes out", 110), ("packets", "packets", 90))

# Applies what arrived to the model; False when the window must close.
Feed = Callable[[ViewModel], bool]


class NoDisplay(Exception):
    """No desktop to open a window on; the message says what is missing."""


def time_text(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def run(model: ViewModel, feed: Feed, geometry: str = "1100x650") -> None:
    import tkinter as tk
    from tkinter import ttk

    try:
        root = tk.Tk(className="traffic-capture-view")
    except tk.TclError as error:
        raise NoDisplay(f"cannot open the viewer window: {error}") from None
    root.geometry(geometry)
    root.title(model.title())

    bar = ttk.Frame(root, padding=4)
    bar.pack(side=tk.TOP, fill=tk.X)
    pause = ttk.Button(bar, text="Pause", width=8)
    pause.pack(side=tk.LEFT)
    ttk.Label(bar, text="  Client filter:").pack(side=tk.LEFT)
    wanted = tk.StringVar(root)
    entry = ttk.Entry(bar, textvariable=wanted, width=28)
    entry.pack(side=tk.LEFT, padx=4)
    close = ttk.Button(bar, text="Close", width=8, command=root.destroy)
    close.pack(side=tk.LEFT, padx=8)
    status = ttk.Label(bar, text="", foreground="#a00000")
    status.pack(side=tk.LEFT, padx=8)

    panes = ttk.PanedWindow(root, orient=tk.VERTICAL)
    panes.pack(side=tk.TOP, fill=tk.BOTH, expand=True)
    packets_frame = ttk.Frame(panes)
    packets = _table(packets_frame, PACKET_COLUMNS)
    clients_frame = ttk.Labelframe(panes, text="Current window", padding=2)
    clients = _table(clients_frame, CLIENT_COLUMNS)
    panes.add(packets_frame, weight=3)
    panes.add(clients_frame, weight=1)

    def redraw() -> None:
        root.title(model.title())
        status.configure(text=model.status())
        if model.paused:
            return
        packets.delete(*packets.get_children())
        last = ""
        for ts, direction, client, kind, size, shown in model.shown_rows():
            last = packets.insert("", tk.END, values=(time_text(ts), direction, client, kind,
                                                      f"{size:,}", shown))
        if last:
            packets.see(last)
        clients.delete(*clients.get_children())
        for client, sums in model.shown_clients():
            clients.insert("", tk.END, values=(client, f"{sums.bytes_in:,}",
                                               f"{sums.bytes_out:,}", f"{sums.packets:,}"))
        if model.window_start is not None:
            end = model.window_start + model.window_seconds
            clients_frame.configure(text=(
                f"Current window {time.strftime('%H:%M:%S', time.localtime(model.window_start))}"
                f" - {time.strftime('%H:%M:%S', time.localtime(end))}"))

    def toggle_pause() -> None:
        model.paused = not model.paused
        pause.configure(text="Resume" if model.paused else "Pause")
        redraw()

    def filter_changed(*_: object) -> None:
        model.filter_text = wanted.get()
        redraw()

    drawn: list[object] = [None]  # the model's version last drawn

    def poll() -> None:
        try:
            going_on = feed(model)
        except Exception:  # noqa: BLE001 - the window must outlive a bad message
            going_on = True
        if not going_on:
            root.destroy()
            return
        if model.version() != drawn[0]:  # redrawing 500 rows costs; only when they changed
            drawn[0] = model.version()
            redraw()
        root.after(POLL_MS, poll)

    pause.configure(command=toggle_pause)
    wanted.trace_add("write", filter_changed)
    root.bind("<Escape>", lambda _: root.destroy())
    entry.focus_set()
    root.after(0, poll)
    root.mainloop()


def _table(parent: tkinter.Misc, columns: tuple[tuple[str, str, int], ...]) -> ttk.Treeview:
    import tkinter as tk
    from tkinter import ttk

    tree = ttk.Treeview(parent, columns=[c for c, _, _ in columns], show="headings", height=8)
    for name, heading, width in columns:
        tree.heading(name, text=heading)
        tree.column(name, width=width, stretch=name in ("preview", "client"),
                    anchor="e" if name in ("bytes", "in", "out", "packets") else "w")
    bar = ttk.Scrollbar(parent, orient=tk.VERTICAL, command=tree.yview)
    tree.configure(yscrollcommand=bar.set)
    bar.pack(side=tk.RIGHT, fill=tk.Y)
    tree.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
    return tree
