-- The daily analytics slice per combined segment (SPEC §8).
-- Placeholders: {{database}}.
CREATE TABLE IF NOT EXISTS {{database}}.marketing_analytics_daily (
    analysis_date Date,
    segment LowCardinality(String),
    clients_count UInt64,
    total_revenue Decimal(18, 2),
    avg_revenue Decimal(18, 2),
    active_clients UInt64,
    new_clients UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(analysis_date)
ORDER BY (analysis_date, segment)
