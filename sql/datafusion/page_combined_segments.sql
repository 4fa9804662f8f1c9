-- HTML run report: clients per combined segment (label, value). Tables: marketing_clients.
SELECT combined_segment AS label, count(*) AS value
FROM marketing_clients
GROUP BY combined_segment
ORDER BY value DESC, label
