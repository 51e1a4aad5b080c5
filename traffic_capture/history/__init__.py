"""History: months of closed windows on one machine, at several resolutions, in Parquet parts
that DuckDB reads while the one writer writes.

    retention   --history-keep: the resolutions and how long each is kept (pure)
    periods     the UTC hours, days and months parts are cut by (pure)
    layout      part names, the folder listing, the choice of parts read (pure but the listing)
    compaction  which parts to merge, and when (pure)
    store       the folder's marker and the writer's lock
    duck        DuckDB (the `history` extra) and the shared SQL
    writer      HistoryWriter: closed windows in, parts out
    reader      HistoryReader: queries.Reader over the parts
    importer    import_csv: existing CSVs into a history

Only writer, reader and importer need DuckDB; importing this package does not.
"""
