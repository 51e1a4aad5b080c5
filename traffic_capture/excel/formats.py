"""Number formats the workbooks share: bytes read as KB, MB or GB (1 KB = 1,000 bytes)."""

from __future__ import annotations

# Excel's conditional sections: under a million bytes in KB, under a billion in MB, else GB; each
# trailing comma divides by 1,000. LibreOffice reads the same code.
BYTES_FORMAT = '[<1000000]0.0," KB";[<1000000000]0.0,," MB";0.00,,," GB"'
# Exact counts, where a table lists raw rows.
COUNT_FORMAT = "#,##0"
BYTES_AXIS = "bytes (KB, MB, GB of 1,000)"
