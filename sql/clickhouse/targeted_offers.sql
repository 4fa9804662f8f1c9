-- Offers with the next best action (SPEC §6, §8): three per client and day. created_at is
-- DateTime('UTC') (D 00:00 UTC), so its month partition does not depend on the server's zone.
-- Placeholders: {{database}}.
CREATE TABLE IF NOT EXISTS {{database}}.targeted_offers (
    offer_id UInt64,
    client_id String,
    client_name Nullable(String),
    segment LowCardinality(String),
    combined_segment LowCardinality(String),
    offer_type LowCardinality(String),
    offer_description String,
    expected_revenue Decimal(12, 2),
    priority_level UInt8,
    offer_priority UInt8,
    days_valid UInt16,
    nba_rank UInt8,
    total_value Decimal(15, 2),
    total_portfolio_value Decimal(15, 2),
    created_at DateTime('UTC')
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (client_id, nba_rank)
