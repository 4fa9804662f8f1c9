-- Offers and next best action (SPEC §6): each client gets its combined segment's offer
-- templates (sql/offer_templates.csv), expected revenue scaled by total value (truncated to
-- whole roubles), days valid by priority level, a deterministic offer_id, and nba_rank 1..3
-- (offer_priority ascending, expected_revenue descending, offer_type ascending).
-- Tables: marketing_clients, offer_templates. Placeholders: {{processing_date}}.
--
-- A client's offers differ only in their template, and its expected revenues all share one
-- multiplier, so the rank depends on (combined segment, multiplier) alone: it is computed
-- once over templates x the four multipliers (a few dozen rows) and joined to the clients.
-- This keeps the per-client work one hash join against a few dozen rows, with no window and
-- no sort over every offer (issue 3: 5M clients within the memory budget). There is no
-- ORDER BY: a client's offers are found by client_id, not by file order, and sorting 15M
-- offers cost a third of the stage's time and 340 MB at 5M clients. (The join streams
-- marketing_clients, which is in client_id order, so the files hold long ascending runs.)
WITH multipliers AS (
    SELECT * FROM (VALUES (15), (12), (10), (7)) AS m(tenths)
),
ranked_templates AS (
    SELECT t.combined_segment, t.offer_type, t.offer_description, t.offer_priority, m.tenths,
           t.base_revenue * m.tenths / 10 AS expected_revenue,
           ROW_NUMBER() OVER (PARTITION BY t.combined_segment, m.tenths
                              ORDER BY t.offer_priority ASC, t.base_revenue * m.tenths / 10 DESC, t.offer_type ASC) AS nba_rank
    FROM offer_templates t CROSS JOIN multipliers m
),
clients AS (
    SELECT client_id, client_name, segment, combined_segment, priority_level, total_value,
           portfolio_value AS total_portfolio_value,
           CASE
               WHEN total_value > 1000000 THEN 15
               WHEN total_value > 500000 THEN 12
               WHEN total_value < 50000 THEN 7
               ELSE 10
           END AS tenths,
           CASE WHEN priority_level <= 2 THEN 30 WHEN priority_level = 3 THEN 14 ELSE 7 END AS days_valid
    FROM marketing_clients
)
SELECT offer_id(c.client_id, r.offer_type, '{{processing_date}}') AS offer_id,
       c.client_id, c.client_name, c.segment, c.combined_segment,
       r.offer_type, r.offer_description, r.expected_revenue,
       c.priority_level, r.offer_priority, c.days_valid, c.total_value, c.total_portfolio_value,
       r.nba_rank,
       -- microseconds: Spark 3.5 cannot read Parquet TIMESTAMP(NANOS) (docs/SPEC.md, interop)
       arrow_cast('{{processing_date}} 00:00:00', 'Timestamp(Microsecond, None)') AS created_at
FROM clients c
JOIN ranked_templates r ON r.combined_segment = c.combined_segment AND r.tenths = c.tenths
