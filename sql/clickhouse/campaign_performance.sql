-- Campaign performance per day, offer type and segment (SPEC §8), summed by the engine.
-- Placeholders: {{database}}.
CREATE TABLE IF NOT EXISTS {{database}}.campaign_performance (
    analysis_date Date,
    offer_type LowCardinality(String),
    combined_segment LowCardinality(String),
    offers_sent UInt64,
    responses UInt64,
    conversions UInt64,
    revenue Decimal(18, 2)
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(analysis_date)
ORDER BY (analysis_date, offer_type, combined_segment)
