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

CREATE TABLE IF NOT EXISTS traffic.traffic_1m
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
ENGINE = SummingMergeTree((http_bytes, ftp_bytes, tcp_bytes, udp_bytes, other_bytes))
PARTITION BY toDate(window_start)
ORDER BY (server, window_start, client_ip, direction)
TTL window_start + INTERVAL 90 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS traffic.traffic_1m_mv TO traffic.traffic_1m
AS SELECT
    server,
    toDateTime(intDiv(toUInt32(window_start), 60) * 60, 'UTC') AS window_start,
    toUInt32(60) AS window_seconds,
    client_ip,
    direction,
    sum(http_bytes) AS http_bytes,
    sum(ftp_bytes) AS ftp_bytes,
    sum(tcp_bytes) AS tcp_bytes,
    sum(udp_bytes) AS udp_bytes,
    sum(other_bytes) AS other_bytes
FROM traffic.traffic_5s
GROUP BY server, window_start, client_ip, direction;

CREATE TABLE IF NOT EXISTS traffic.traffic_1h
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
ENGINE = SummingMergeTree((http_bytes, ftp_bytes, tcp_bytes, udp_bytes, other_bytes))
PARTITION BY toYYYYMM(window_start)
ORDER BY (server, window_start, client_ip, direction)
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS traffic.traffic_1h_mv TO traffic.traffic_1h
AS SELECT
    server,
    toDateTime(intDiv(toUInt32(window_start), 3600) * 3600, 'UTC') AS window_start,
    toUInt32(3600) AS window_seconds,
    client_ip,
    direction,
    sum(http_bytes) AS http_bytes,
    sum(ftp_bytes) AS ftp_bytes,
    sum(tcp_bytes) AS tcp_bytes,
    sum(udp_bytes) AS udp_bytes,
    sum(other_bytes) AS other_bytes
FROM traffic.traffic_5s
GROUP BY server, window_start, client_ip, direction;

INSERT INTO traffic.schema_migrations (version, description) VALUES (2, 'rollups fed by materialized views');

CREATE TABLE IF NOT EXISTS traffic.traffic_servers
(
    `server` LowCardinality(String),
    `first_start` SimpleAggregateFunction(min, DateTime('UTC')),
    `last_end` SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY server;

CREATE MATERIALIZED VIEW IF NOT EXISTS traffic.traffic_servers_mv TO traffic.traffic_servers
AS SELECT
    server,
    min(window_start) AS first_start,
    max(window_start + window_seconds) AS last_end
FROM traffic.traffic_5s
GROUP BY server;

INSERT INTO traffic.schema_migrations (version, description) VALUES (3, 'each server\'s first and last window');

ALTER TABLE traffic.traffic_5s MODIFY SETTING non_replicated_deduplication_window = 100000;

ALTER TABLE traffic.traffic_1m MODIFY SETTING non_replicated_deduplication_window = 100000;

ALTER TABLE traffic.traffic_1h MODIFY SETTING non_replicated_deduplication_window = 100000;

INSERT INTO traffic.schema_migrations (version, description) VALUES (4, 'a deduplication window on each resolution\'s table, so that a retried batch is stored once');
