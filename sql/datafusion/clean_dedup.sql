-- Cleaning, step 2 of 2 (step 1, strict parsing into typed rows, is Rust: ebroker_plans::parse).
-- Deduplicate one parsed table by its id (SPEC §4): keep the row with the latest event date;
-- on a tie, the later arrival (the later CSV line, or the higher Kafka offset), so a re-sent
-- record replaces the older copy.
--
-- Most ids arrive once, so the rule ranks only the copies: `repeated` hashes the ids and keeps
-- those parsed more than once; their copies, ordered by (id, latest event first, latest
-- arrival first), are `replaced` when their predecessor has the same id (LAG); every parsed
-- row but the replaced ones is kept, in the order of the parse. No sort of the whole table:
-- ordering every row by id to find the first of each (LAG over all rows) was most of the
-- clean stage (500k clients: see docs/DESIGN.md, "Performance"). The stage plans this rule on
-- one partition without join reordering (dedup.rs): the replaced copies are the hash join's
-- build side, the parsed rows stream through it, and the files come out in the parse's
-- order, the same on every run.
--
-- Tables: parsed (the typed rows of this run, with _arrival).
-- Placeholders: {{columns}} the table's columns, {{id}} its id, {{event}} its event date.
WITH repeated AS (
    SELECT {{id}} AS repeated_id
    FROM parsed
    GROUP BY {{id}}
    HAVING count(*) > 1
),
replaced AS (
    SELECT repeated_id, _arrival AS replaced_arrival
    FROM (
        SELECT r.repeated_id, p._arrival,
               LAG(r.repeated_id) OVER (ORDER BY r.repeated_id, p.{{event}} DESC, p._arrival DESC)
                   AS previous_id
        FROM repeated r
        JOIN parsed p ON p.{{id}} = r.repeated_id
    ) ordered
    WHERE previous_id = repeated_id
)
SELECT {{columns}}
FROM replaced r
RIGHT ANTI JOIN parsed p ON p.{{id}} = r.repeated_id AND p._arrival = r.replaced_arrival
