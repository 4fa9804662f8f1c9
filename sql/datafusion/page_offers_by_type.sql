-- HTML run report: offers and their expected revenue by offer type (label, offers, value).
-- Tables: targeted_offers.
SELECT offer_type AS label, count(*) AS offers, sum(expected_revenue) AS value
FROM targeted_offers
GROUP BY offer_type
ORDER BY value DESC, label
