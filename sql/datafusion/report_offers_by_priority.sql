-- Standard report: offers by client priority level and offer priority. Tables: targeted_offers.
SELECT priority_level, offer_priority,
       count(*) AS offers,
       count(DISTINCT client_id) AS clients,
       sum(expected_revenue) AS total_expected_revenue
FROM targeted_offers
GROUP BY priority_level, offer_priority
ORDER BY priority_level, offer_priority
