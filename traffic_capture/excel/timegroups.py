"""Time units for reading a capture over hours and days: derived columns and the unit to chart.

Five-second windows are right for the CSV and wrong for a chart of a day (17,280 bars). The
workbooks add `date`, `hour` and `minute` columns (each window's start cut down to that unit) and
group by the unit chosen for the span: `auto` takes the finest unit that keeps the chart under
MAX_BARS bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DERIVED = ("date", "hour", "minute")
# --group value -> the column the pivots' rows (and the report's tables) group by.
GROUP_FIELDS = {"5s": "window_start", "minute": "minute", "hour": "hour", "day": "date"}
GROUP_CHOICES = ("auto", *GROUP_FIELDS)
MAX_BARS = 200
# How each grouping column reads, in Excel's number formats and as chart/category text. An
# hour reads hh:mm (its minutes are 00): `hh:00` is not a valid date-time code, and the hours
# showed as serial numbers (46083.0416666667) where it was used.
EXCEL_FORMATS = {"window_start": "yyyy-mm-dd hh:mm:ss", "window_end": "yyyy-mm-dd hh:mm:ss",
                 "minute": "yyyy-mm-dd hh:mm", "hour": "yyyy-mm-dd hh:mm", "date": "yyyy-mm-dd"}
TEXT_FORMATS = {"window_start": "%Y-%m-%d %H:%M:%S", "minute": "%Y-%m-%d %H:%M",
                "hour": "%Y-%m-%d %H:00", "date": "%Y-%m-%d"}
UNIT_NAMES = {"window_start": "window", "minute": "minute", "hour": "hour", "date": "day"}
# The same cuts as worksheet formulas on window_start (column A), for a query table to fill down.
FORMULAS = {"date": "=INT(A{row})", "hour": "=INT(A{row})+HOUR(A{row})/24",
            "minute": "=INT(A{row})+(HOUR(A{row})*60+MINUTE(A{row}))/1440"}


def with_derived(df: pd.DataFrame) -> pd.DataFrame:
    """`df` plus the date, hour and minute of each window's start."""
    start = df["window_start"]
    return df.assign(date=start.dt.floor("D"), hour=start.dt.floor("h"),
                     minute=start.dt.floor("min"))


def group_field(df: pd.DataFrame, group: str) -> str:
    """The column to group rows by: the one asked for, or for `auto` the finest unit whose
    distinct values fit in MAX_BARS (a day of 5-second windows: hours)."""
    if group != "auto":
        return GROUP_FIELDS[group]
    for field in ("window_start", "minute", "hour"):
        values = df["window_start"].dt.floor({"window_start": "s", "minute": "min",
                                              "hour": "h"}[field])
        if values.nunique() <= MAX_BARS:
            return field
    return "date"


def excel_serials(times: pd.Series) -> np.ndarray:
    """Date-times as Excel serial days (1900 system)."""
    return ((times - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)).to_numpy()
