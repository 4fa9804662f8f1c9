-- Offers and next best action (SPEC §6): each client gets its combined segment's offer
-- templates (sql/offer_templates.csv), expected revenue scaled by total value (truncated to
-- whole roubles), days valid by priority level, a deterministic offer_id, and nba_rank 1..3
-- (offer_priority ascending, expected_revenue descending, offer_type ascending).
-- Tables: marketing_clients, offer_templates. Placeholders: {{processing_date}}.
WITH priced AS (
    SELECT m.client_id, m.client_name, m.segment, m.combined_segment,
           t.offer_type, t.offer_description, t.offer_priority,
           t.base_revenue * CASE
               WHEN m.total_value > 1000000 THEN 15
               WHEN m.total_value > 500000 THEN 12
               WHEN m.total_value < 50000 THEN 7
               ELSE 10
           END / 10 AS expected_revenue,
           m.priority_level,
           CASE WHEN m.priority_level <= 2 THEN 30 WHEN m.priority_level = 3 THEN 14 ELSE 7 END AS days_valid,
           m.total_value,
           m.portfolio_value AS total_portfolio_value
    FROM marketing_clients m
    JOIN offer_templates t ON t.combined_segment = m.combined_segment
)
SELECT offer_id(client_id, offer_type, '{{processing_date}}') AS offer_id,
       client_id, client_name, segment, combined_segment,
       offer_type, offer_description, expected_revenue,
       priority_level, offer_priority, days_valid, total_value, total_portfolio_value,
       ROW_NUMBER() OVER (PARTITION BY client_id
                          ORDER BY offer_priority ASC, expected_revenue DESC, offer_type ASC) AS nba_rank,
       CAST('{{processing_date}} 00:00:00' AS TIMESTAMP) AS created_at
FROM priced
ORDER BY client_id, nba_rank
