-- Segmentation (SPEC §5): one row per cleaned client with its aggregates and segments.
-- Tables: the cleaned tables of the processing date (clients, bank_transactions,
-- client_logins, client_activities, payments, securities_portfolios).
-- Placeholders: {{processing_date}}.
-- Money is rounded to cents so that in-process and cluster runs (which add in different
-- orders) give identical results; thresholds apply to the rounded values.
WITH tx AS (
    SELECT client_id,
           count(*)        AS transaction_count,
           sum(amount_rub) AS total_amount,
           count(amount_rub) AS amount_count,
           max(amount_rub) AS max_amount
    FROM bank_transactions
    GROUP BY client_id
),
lg AS (
    SELECT client_id,
           count(*) AS login_count,
           sum(CASE WHEN success THEN 1 ELSE 0 END) AS successful_logins
    FROM client_logins
    GROUP BY client_id
),
ac AS (
    SELECT client_id,
           count(*)              AS activity_count,
           sum(duration_minutes) AS total_activity_minutes,
           sum(page_views)       AS total_page_views
    FROM client_activities
    GROUP BY client_id
),
pm AS (
    SELECT client_id, count(*) AS payment_count, sum(amount) AS total_payment_amount
    FROM payments
    GROUP BY client_id
),
pf AS (
    SELECT client_id, count(*) AS portfolio_count, sum(quantity * current_price) AS portfolio_value
    FROM securities_portfolios
    GROUP BY client_id
),
aggregates AS (
    SELECT c.client_id, c.client_name, c.city, c.status, c.segment AS original_segment,
           COALESCE(tx.transaction_count, 0)                 AS transaction_count,
           round(COALESCE(tx.total_amount, 0), 2)            AS total_transaction_amount,
           -- the average from the rounded sum, so every engine and cluster size agrees
           CASE WHEN tx.amount_count > 0
                THEN round(round(tx.total_amount, 2) / tx.amount_count, 2) ELSE 0 END AS avg_transaction_amount,
           round(COALESCE(tx.max_amount, 0), 2)              AS max_transaction_amount,
           COALESCE(lg.login_count, 0)                       AS login_count,
           COALESCE(lg.successful_logins, 0)                 AS successful_logins,
           COALESCE(ac.activity_count, 0)                    AS activity_count,
           COALESCE(ac.total_activity_minutes, 0)            AS total_activity_minutes,
           COALESCE(ac.total_page_views, 0)                  AS total_page_views,
           COALESCE(pm.payment_count, 0)                     AS payment_count,
           round(COALESCE(pm.total_payment_amount, 0), 2)    AS total_payment_amount,
           COALESCE(pf.portfolio_count, 0)                   AS portfolio_count,
           round(COALESCE(pf.portfolio_value, 0), 2)         AS portfolio_value
    FROM clients c
    LEFT JOIN tx ON tx.client_id = c.client_id
    LEFT JOIN lg ON lg.client_id = c.client_id
    LEFT JOIN ac ON ac.client_id = c.client_id
    LEFT JOIN pm ON pm.client_id = c.client_id
    LEFT JOIN pf ON pf.client_id = c.client_id
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
       CAST('{{processing_date}} 00:00:00' AS TIMESTAMP) AS created_at
FROM aggregates
ORDER BY client_id
