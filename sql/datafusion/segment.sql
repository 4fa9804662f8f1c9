-- Segmentation (SPEC §5): one row per cleaned client with its aggregates and segments.
-- Tables: the cleaned tables of the processing date (clients, bank_transactions,
-- client_logins, client_activities, payments, securities_portfolios).
-- Placeholders: {{processing_date}}.
-- Money is rounded to cents so that in-process and cluster runs (which add in different
-- orders) give identical results; thresholds apply to the rounded values.
-- Every source row becomes one wide row keyed by client_id and everything is aggregated in
-- one GROUP BY: aggregation spills to disk under the memory budget, where five hash joins
-- against millions of clients would not (issue 3: 5M clients within 1 GiB).
WITH source_rows AS (
    SELECT client_id, client_name, city, status, segment AS original_segment,
           CAST(1 AS BIGINT) AS client_rows,
           CAST(0 AS BIGINT) AS tx_rows, CAST(NULL AS DOUBLE) AS amount_rub,
           CAST(0 AS BIGINT) AS login_rows, CAST(0 AS BIGINT) AS login_ok,
           CAST(0 AS BIGINT) AS activity_rows, CAST(NULL AS BIGINT) AS minutes, CAST(NULL AS BIGINT) AS page_views,
           CAST(0 AS BIGINT) AS payment_rows, CAST(NULL AS DOUBLE) AS payment_amount,
           CAST(0 AS BIGINT) AS portfolio_rows, CAST(NULL AS DOUBLE) AS position_value
    FROM clients
    UNION ALL
    SELECT client_id, NULL, NULL, NULL, NULL, 0, 1, amount_rub, 0, 0, 0, NULL, NULL, 0, NULL, 0, NULL
    FROM bank_transactions
    UNION ALL
    SELECT client_id, NULL, NULL, NULL, NULL, 0, 0, NULL, 1, CASE WHEN success THEN 1 ELSE 0 END,
           0, NULL, NULL, 0, NULL, 0, NULL
    FROM client_logins
    UNION ALL
    SELECT client_id, NULL, NULL, NULL, NULL, 0, 0, NULL, 0, 0,
           1, CAST(duration_minutes AS BIGINT), CAST(page_views AS BIGINT), 0, NULL, 0, NULL
    FROM client_activities
    UNION ALL
    SELECT client_id, NULL, NULL, NULL, NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, 1, amount, 0, NULL
    FROM payments
    UNION ALL
    SELECT client_id, NULL, NULL, NULL, NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, 0, NULL,
           1, quantity * current_price
    FROM securities_portfolios
),
per_client AS (
    SELECT client_id,
           max(client_name) AS client_name, max(city) AS city, max(status) AS status,
           max(original_segment) AS original_segment,
           sum(client_rows) AS client_rows,
           sum(tx_rows) AS transaction_count, sum(amount_rub) AS total_amount,
           count(amount_rub) AS amount_count, max(amount_rub) AS max_amount,
           sum(login_rows) AS login_count, sum(login_ok) AS successful_logins,
           sum(activity_rows) AS activity_count, sum(minutes) AS total_activity_minutes,
           sum(page_views) AS total_page_views,
           sum(payment_rows) AS payment_count, sum(payment_amount) AS total_payment_amount,
           sum(portfolio_rows) AS portfolio_count, sum(position_value) AS portfolio_value
    FROM source_rows
    GROUP BY client_id
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
    -- records of unknown clients are not segmented (SPEC §5)
    WHERE client_rows > 0
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
