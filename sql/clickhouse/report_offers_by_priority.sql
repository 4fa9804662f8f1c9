-- Report: the day's offers by priority level and offer priority (SPEC §8).
-- Placeholders: {{database}}, {{processing_date}}.
SELECT priority_level, offer_priority,
       count() AS offers,
       uniqExact(client_id) AS clients,
       sum(expected_revenue) AS total_expected_revenue
FROM {{database}}.targeted_offers
WHERE toDate(created_at, 'UTC') = toDate('{{processing_date}}')
GROUP BY priority_level, offer_priority
ORDER BY priority_level, offer_priority
