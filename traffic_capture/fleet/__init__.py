"""The fleet: many servers' closed windows in one ClickHouse database, at several resolutions,
read as one store (queries.Reader) or per server.

    schema   the tables, their DDL, the versions that built them and the keep (pure)
    connect  URLs, credentials and the clickhouse-connect client (the `clickhouse` extra)
    migrate  `clickhouse init`: creates or upgrades a database to the schema, sets the keep
    reader   ClickHouseReader: queries.Reader over the tables, and the servers held
    command  `traffic-capture clickhouse init|info`

Imported only when asked; only connect imports clickhouse-connect, and only when a client is
opened.
"""
