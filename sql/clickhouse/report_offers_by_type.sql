-- Report: offers by type and combined segment for one day (SPEC §8). The average is
-- sum / count: avg() over Decimal fails on zero rows in ClickHouse 18.16.
-- Placeholders: {{database}}, {{processing_date}}.
SELECT offer_type, combined_segment,
       count() AS offers,
       sum(expected_revenue) AS total_expected_revenue,
       round(toFloat64(sum(expected_revenue)) / count(), 2) AS avg_expected_revenue,
       min(days_valid) AS min_days_valid,
       max(days_valid) AS max_days_valid
FROM {{database}}.targeted_offers
WHERE toDate(created_at, 'UTC') = toDate('{{processing_date}}')
GROUP BY offer_type, combined_segment
ORDER BY total_expected_revenue DESC, offer_type, combined_segment
