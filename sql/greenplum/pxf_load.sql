-- One day of a table loaded from its PXF external table (docs/SPEC.md §7): one row per key,
-- the latest event, with timestamps converted from microseconds in UTC and money rounded to
-- its scale. The day's old rows are deleted first, in the same transaction.
-- Placeholders: {{table}}, {{external}} (quoted names), {{names}} (the columns),
-- {{select}} (each column as converted), {{key}}, {{order}} (the latest first),
-- {{processing_date}}.
INSERT INTO {{table}} ({{names}}, processing_date)
SELECT {{names}}, DATE '{{processing_date}}'
FROM (
    SELECT {{select}},
           row_number() OVER (PARTITION BY {{key}} ORDER BY {{order}}) AS load_rank
    FROM {{external}}
) deduplicated
WHERE load_rank = 1
