-- Standard report: offers by client priority level and offer priority. Tables: targeted_offers.
-- Distinct clients are counted by grouping per client first: that aggregation spills,
-- where count(DISTINCT) keeps every id of a group in memory.
SELECT priority_level, offer_priority,
       sum(offers) AS offers,
       count(*) AS clients,
       sum(expected_revenue) AS total_expected_revenue
FROM (
    SELECT priority_level, offer_priority, client_id,
           count(*) AS offers, sum(expected_revenue) AS expected_revenue
    FROM targeted_offers
    GROUP BY priority_level, offer_priority, client_id
) per_client
GROUP BY priority_level, offer_priority
ORDER BY priority_level, offer_priority
