-- Daily analytics slice (SPEC §8): per combined segment, the clients, their total and average
-- total_value, active clients (status Active) and new clients (registered on the date).
-- Tables: marketing_clients, clients. Placeholders: {{processing_date}}.
SELECT CAST('{{processing_date}}' AS DATE) AS analysis_date,
       m.combined_segment AS segment,
       count(*) AS clients_count,
       round(sum(m.total_value), 2) AS total_revenue,
       round(round(sum(m.total_value), 2) / count(*), 2) AS avg_revenue,
       sum(CASE WHEN m.status = 'Active' THEN 1 ELSE 0 END) AS active_clients,
       sum(CASE WHEN c.registration_date = CAST('{{processing_date}}' AS DATE) THEN 1 ELSE 0 END) AS new_clients
FROM marketing_clients m
JOIN clients c ON c.client_id = m.client_id
GROUP BY m.combined_segment
ORDER BY segment
