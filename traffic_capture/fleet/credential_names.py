"""The names a ClickHouse user and password are given under, outside the command line: the
daemon's options name them in their help, so they live apart from connect.py, which a run
without --clickhouse does not import."""

USER_ENV = "TRAFFIC_CLICKHOUSE_USER"
PASSWORD_ENV = "TRAFFIC_CLICKHOUSE_PASSWORD"
PASSWORD_CREDENTIAL = "clickhouse-password"  # systemd's LoadCredential= name (service-unit)
