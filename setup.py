"""The one compiled piece: pcap record walking (see traffic_capture/sources/_record_walk.c).

optional=True: without a C compiler (a Windows machine without Build Tools, say) the install
still succeeds and the same loop runs in Python, slower but with the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("traffic_capture.sources._record_walk",
                             ["traffic_capture/sources/_record_walk.c"], optional=True)])
