"""The Excel wing: `traffic-capture excel` (a pivot dashboard) and `traffic-capture report` (a
static report), built from traffic.csv, or from a history's rollup that fits the range asked.

It imports the CSV contract (csvformat), the rules' constants and the history's reader, never
capture code: the workbooks can be built on a desktop that never captured a packet.
"""
