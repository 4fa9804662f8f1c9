-- Standard report: offers by type and combined segment. Tables: targeted_offers.
SELECT offer_type, combined_segment,
       count(*) AS offers,
       sum(expected_revenue) AS total_expected_revenue,
       round(avg(expected_revenue), 2) AS avg_expected_revenue,
       min(days_valid) AS min_days_valid,
       max(days_valid) AS max_days_valid
FROM targeted_offers
GROUP BY offer_type, combined_segment
ORDER BY total_expected_revenue DESC, offer_type, combined_segment
