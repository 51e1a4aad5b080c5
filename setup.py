"""The compiled pieces: pcap record and Linux ring walking (traffic_capture/sources/
_record_walk.c), the batch parse's pass over the frames' first bytes (traffic_capture/
_parse_rows.c), the rules applied to its fields and the search of FTP control payloads for
announcements (traffic_capture/_classify_rows.c), a batch's
sums per client and class (traffic_capture/_group_sums.c), the copy of frames for the sinks
that keep them (traffic_capture/_gather.c), the packet log's line layout (traffic_capture/
sinks/_log_lines.c) and the CSV's rows (traffic_capture/sinks/_csv_rows.c).

optional=True: without a C compiler (a Windows machine without Build Tools, say) the install
still succeeds and the same loops run in Python, slower but with the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("traffic_capture.sources._record_walk",
              ["traffic_capture/sources/_record_walk.c"], optional=True),
    Extension("traffic_capture._gather", ["traffic_capture/_gather.c"], optional=True),
    Extension("traffic_capture._parse_rows", ["traffic_capture/_parse_rows.c"], optional=True),
    Extension("traffic_capture._group_sums", ["traffic_capture/_group_sums.c"], optional=True),
    Extension("traffic_capture._classify_rows", ["traffic_capture/_classify_rows.c"],
              optional=True),
    Extension("traffic_capture.sinks._log_lines",
              ["traffic_capture/sinks/_log_lines.c"], optional=True),
    Extension("traffic_capture.sinks._csv_rows",
              ["traffic_capture/sinks/_csv_rows.c"], optional=True),
])
