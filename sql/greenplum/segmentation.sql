-- In-database segmentation (SPEC §5), the rules of sql/datafusion/segment.sql in the SQL that
-- Greenplum and PostgreSQL share, from the tables `publish greenplum` loaded. It replaces the
-- day in client_segmentation_gp; `ebroker verify greenplum` compares that with the
-- client_segmentation mart loaded beside it.
-- Placeholders: {{schema}} (a validated identifier), {{processing_date}}.
DELETE FROM "{{schema}}".client_segmentation_gp WHERE processing_date = DATE '{{processing_date}}';

INSERT INTO "{{schema}}".client_segmentation_gp (
    client_id, client_name, city, status, original_segment,
    transaction_count, total_transaction_amount, avg_transaction_amount, max_transaction_amount,
    login_count, successful_logins, activity_count, total_activity_minutes, total_page_views,
    payment_count, total_payment_amount, portfolio_count, portfolio_value,
    segment, portfolio_segment, transaction_segment, created_at, processing_date)
WITH tx AS (
    SELECT client_id, count(*) AS transaction_count,
           round(sum(amount_rub)::NUMERIC, 2) AS total_amount,
           count(amount_rub) AS amount_count,
           round(max(amount_rub)::NUMERIC, 2) AS max_amount
    FROM "{{schema}}".bank_transactions
    WHERE processing_date = DATE '{{processing_date}}'
    GROUP BY client_id
),
lg AS (
    SELECT client_id, count(*) AS login_count, sum(CASE WHEN success THEN 1 ELSE 0 END) AS successful_logins
    FROM "{{schema}}".client_logins
    WHERE processing_date = DATE '{{processing_date}}'
    GROUP BY client_id
),
ac AS (
    SELECT client_id, count(*) AS activity_count,
           sum(duration_minutes) AS total_activity_minutes, sum(page_views) AS total_page_views
    FROM "{{schema}}".client_activities
    WHERE processing_date = DATE '{{processing_date}}'
    GROUP BY client_id
),
pm AS (
    SELECT client_id, count(*) AS payment_count, round(sum(amount)::NUMERIC, 2) AS total_payment_amount
    FROM "{{schema}}".payments
    WHERE processing_date = DATE '{{processing_date}}'
    GROUP BY client_id
),
pf AS (
    SELECT client_id, count(*) AS portfolio_count, round(sum(quantity * current_price)::NUMERIC, 2) AS portfolio_value
    FROM "{{schema}}".securities_portfolios
    WHERE processing_date = DATE '{{processing_date}}'
    GROUP BY client_id
),
aggregates AS (
    SELECT c.client_id, c.client_name, c.city, c.status, c.segment AS original_segment,
           COALESCE(tx.transaction_count, 0) AS transaction_count,
           COALESCE(tx.total_amount, 0) AS total_transaction_amount,
           CASE WHEN tx.amount_count > 0 THEN round(tx.total_amount / tx.amount_count, 2) ELSE 0 END AS avg_transaction_amount,
           COALESCE(tx.max_amount, 0) AS max_transaction_amount,
           COALESCE(lg.login_count, 0) AS login_count,
           COALESCE(lg.successful_logins, 0) AS successful_logins,
           COALESCE(ac.activity_count, 0) AS activity_count,
           COALESCE(ac.total_activity_minutes, 0) AS total_activity_minutes,
           COALESCE(ac.total_page_views, 0) AS total_page_views,
           COALESCE(pm.payment_count, 0) AS payment_count,
           COALESCE(pm.total_payment_amount, 0) AS total_payment_amount,
           COALESCE(pf.portfolio_count, 0) AS portfolio_count,
           COALESCE(pf.portfolio_value, 0) AS portfolio_value
    FROM "{{schema}}".clients c
    LEFT JOIN tx ON tx.client_id = c.client_id
    LEFT JOIN lg ON lg.client_id = c.client_id
    LEFT JOIN ac ON ac.client_id = c.client_id
    LEFT JOIN pm ON pm.client_id = c.client_id
    LEFT JOIN pf ON pf.client_id = c.client_id
    WHERE c.processing_date = DATE '{{processing_date}}'
)
SELECT client_id, client_name, city, status, original_segment,
       transaction_count, total_transaction_amount, avg_transaction_amount, max_transaction_amount,
       login_count, successful_logins, activity_count, total_activity_minutes, total_page_views,
       payment_count, total_payment_amount, portfolio_count, portfolio_value,
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
       TIMESTAMP '{{processing_date}} 00:00:00' AS created_at,
       DATE '{{processing_date}}' AS processing_date
FROM aggregates;
