"""The fleet: many servers' closed windows in one ClickHouse database, at several resolutions,
read as one store (queries.Reader) or per server.

    schema   the tables, their DDL, the versions that built them and the keep (pure)
    connect  URLs, credentials, the clickhouse-connect client (the `clickhouse` extra) and
             what ClickHouse's failures mean: for the commands and the daemon's sender alike
    credential_names  the environment variables and systemd credential they come from
    migrate  `clickhouse init`: creates or upgrades a database to the schema, sets the keep
    reader   ClickHouseReader: queries.Reader over the tables, and the servers held
    command  `traffic-capture clickhouse init|info`

Imported only when asked: the daemon's options import credential_names alone, and --clickhouse
schema and connect; only connect imports clickhouse-connect, and only when a client is opened.
"""
