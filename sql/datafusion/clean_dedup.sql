-- Cleaning, step 2 of 2 (step 1, strict parsing into typed rows, is Rust: jobs/src/clean/).
-- Deduplicate one parsed table by its id (SPEC §4): keep the row with the latest event date;
-- on a tie, the later arrival (the later CSV line, or the higher Kafka offset), so a re-sent
-- record replaces the older copy. Rows are written in id order, so reruns and cluster runs
-- produce the same files.
--
-- Tables: parsed (the typed rows of this run, with _arrival).
-- Placeholders: {{columns}} the table's columns, {{id}} its id, {{event}} its event date.
SELECT {{columns}}
FROM (
    SELECT *,
           ROW_NUMBER() OVER (PARTITION BY {{id}} ORDER BY {{event}} DESC, _arrival DESC) AS dedup_rank
    FROM parsed
) ranked
WHERE dedup_rank = 1
ORDER BY {{id}}
