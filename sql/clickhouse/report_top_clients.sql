-- Report: the day's top 10 clients by expected revenue of their offers (SPEC §8).
-- Placeholders: {{database}}, {{processing_date}}.
SELECT client_id, any(client_name) AS client_name, any(combined_segment) AS combined_segment,
       sum(expected_revenue) AS total_expected_revenue,
       max(total_value) AS total_value
FROM {{database}}.targeted_offers
WHERE toDate(created_at, 'UTC') = toDate('{{processing_date}}')
GROUP BY client_id
ORDER BY total_expected_revenue DESC, client_id
LIMIT 10
