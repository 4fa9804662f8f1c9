-- Marketing view of each client (SPEC §8), one row per client and day; the latest
-- last_updated wins within a month. Runs on ClickHouse 18.16 and current releases.
-- DateTime columns are DateTime('UTC') (rows hold D 00:00 UTC): months, partitions and dates
-- are then UTC whatever the server's time zone.
-- Placeholders: {{database}} (a validated identifier).
CREATE TABLE IF NOT EXISTS {{database}}.marketing_clients (
    client_id String,
    client_name Nullable(String),
    portfolio_segment LowCardinality(String),
    transaction_segment LowCardinality(String),
    combined_segment LowCardinality(String),
    total_value Decimal(15, 2),
    activity_score UInt32,
    priority_level UInt8,
    last_updated DateTime('UTC')
)
ENGINE = ReplacingMergeTree(last_updated)
PARTITION BY toYYYYMM(last_updated)
ORDER BY (client_id, priority_level)
