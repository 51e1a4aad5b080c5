"""Office Open XML parts that XlsxWriter cannot write: pivots, slicers, a PivotChart, a text link.

XlsxWriter writes the sheets, the Table and the chart; these modules add the rest to its zip.
"""
