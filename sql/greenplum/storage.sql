-- Greenplum storage of a published table (docs/SPEC.md §7): append-optimized, zstd, spread
-- over the segments by its key (client_id; currency_rates by rate_id). Greenplum flavour only.
-- Placeholders: {{distribution_key}}.
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY ({{distribution_key}})
