-- Report: the day's clients per combined segment with their share and value (SPEC §8).
-- Placeholders: {{database}}, {{processing_date}}.
SELECT combined_segment,
       count() AS clients,
       round(100 * count() / (SELECT count() FROM {{database}}.marketing_clients WHERE toDate(last_updated, 'UTC') = toDate('{{processing_date}}')), 2) AS share_percent,
       sum(total_value) AS total_value
FROM {{database}}.marketing_clients
WHERE toDate(last_updated, 'UTC') = toDate('{{processing_date}}')
GROUP BY combined_segment
ORDER BY clients DESC, combined_segment
