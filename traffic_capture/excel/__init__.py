"""The Excel wing: `traffic-capture excel` (a pivot dashboard) and `traffic-capture report` (a
static report), built from traffic.csv alone.

It imports the CSV contract (csvformat) and the rules' constants, never capture code: the
workbooks can be built on a desktop that never captured a packet.
"""
