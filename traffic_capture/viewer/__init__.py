"""The packet viewer: a desktop window (tkinter) of the latest packets and the current window's
clients.

It runs in a process of its own, fed through a multiprocessing queue by the capture's viewer
output (sinks/viewer.py), or follows a packet log (`traffic-capture view --log PATH`).
tkinter is imported only when a window is opened, so the capture never loads it.
"""
