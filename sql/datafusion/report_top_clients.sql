-- Standard report: the top 10 clients by the expected revenue of their offers.
-- Tables: targeted_offers.
SELECT client_id, client_name, combined_segment,
       sum(expected_revenue) AS total_expected_revenue,
       max(total_value) AS total_value
FROM targeted_offers
GROUP BY client_id, client_name, combined_segment
ORDER BY total_expected_revenue DESC, client_id
LIMIT 10
