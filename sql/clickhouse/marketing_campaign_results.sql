-- Campaign tracking (SPEC §8): what happened to each offer sent. Filled by the campaign
-- tools; ebroker creates it. sent_at is in UTC, as every ebroker DateTime.
-- Placeholders: {{database}}.
CREATE TABLE IF NOT EXISTS {{database}}.marketing_campaign_results (
    campaign_id String,
    offer_id UInt64,
    client_id String,
    offer_type LowCardinality(String),
    combined_segment LowCardinality(String),
    sent_at DateTime('UTC'),
    responded UInt8,
    converted UInt8,
    revenue Decimal(12, 2)
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(sent_at)
ORDER BY (campaign_id, client_id, offer_id)
