-- Daily analytics slice (SPEC §8): per combined segment, the clients, their total and average
-- total_value, active clients (status Active, any case) and new clients (registered on the date).
-- Tables: marketing_clients, clients. Placeholders: {{processing_date}}.
SELECT CAST('{{processing_date}}' AS DATE) AS analysis_date,
       m.combined_segment AS segment,
       count(*) AS clients_count,
       -- summed as exact decimals: the same total whatever order the rows come in
       CAST(round(sum(CAST(m.total_value AS DECIMAL(38, 10))), 2) AS DOUBLE) AS total_revenue,
       -- the average divides the rounded sum as a double, as the reference does
       round(CAST(round(sum(CAST(m.total_value AS DECIMAL(38, 10))), 2) AS DOUBLE) / count(*), 2) AS avg_revenue,
       sum(CASE WHEN upper(m.status) = 'ACTIVE' THEN 1 ELSE 0 END) AS active_clients,
       sum(COALESCE(n.is_new, 0)) AS new_clients
FROM marketing_clients m
-- only the day's registrations are joined: a hash table of a few rows, not of every client
LEFT JOIN (
    SELECT client_id, 1 AS is_new FROM clients WHERE registration_date = CAST('{{processing_date}}' AS DATE)
) n ON n.client_id = m.client_id
GROUP BY m.combined_segment
ORDER BY segment
