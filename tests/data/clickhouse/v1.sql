CREATE DATABASE IF NOT EXISTS traffic;

CREATE TABLE IF NOT EXISTS traffic.schema_migrations
(
    `version` UInt32,
    `description` String,
    `applied_at` DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (version, applied_at);

CREATE TABLE IF NOT EXISTS traffic.traffic_5s
(
    `server` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `window_seconds` UInt32,
    `client_ip` String,
    `direction` Enum8('in' = 1, 'out' = 2),
    `http_bytes` UInt64,
    `ftp_bytes` UInt64,
    `tcp_bytes` UInt64,
    `udp_bytes` UInt64,
    `other_bytes` UInt64
)
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (server, window_start, client_ip, direction)
TTL window_start + INTERVAL 15 DAY
SETTINGS ttl_only_drop_parts = 1;

INSERT INTO traffic.schema_migrations (version, description) VALUES (1, 'the raw 5-second table');
