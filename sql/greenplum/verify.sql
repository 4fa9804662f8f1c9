-- `ebroker verify greenplum`: the database's segmentation (client_segmentation_gp) against
-- the DataFusion mart loaded as client_segmentation, client by client, for one date. One row
-- per client that differs: its id and what differs. Money may differ by a cent at most: the
-- two engines add floating-point amounts in different orders before rounding to cents.
-- Placeholders: {{schema}} (a validated identifier), {{processing_date}}.
SELECT client_id, difference
FROM (
    SELECT COALESCE(m.client_id, g.client_id) AS client_id,
           concat_ws('; ',
               CASE WHEN m.client_id IS NULL THEN 'only in the database' END,
               CASE WHEN g.client_id IS NULL THEN 'only in the mart' END,
               CASE WHEN m.segment IS DISTINCT FROM g.segment THEN 'segment ' || m.segment || ' <> ' || g.segment END,
               CASE WHEN m.portfolio_segment IS DISTINCT FROM g.portfolio_segment THEN 'portfolio_segment ' || m.portfolio_segment || ' <> ' || g.portfolio_segment END,
               CASE WHEN m.transaction_segment IS DISTINCT FROM g.transaction_segment THEN 'transaction_segment ' || m.transaction_segment || ' <> ' || g.transaction_segment END,
               CASE WHEN m.transaction_count IS DISTINCT FROM g.transaction_count THEN 'transaction_count ' || m.transaction_count || ' <> ' || g.transaction_count END,
               CASE WHEN m.login_count IS DISTINCT FROM g.login_count THEN 'login_count ' || m.login_count || ' <> ' || g.login_count END,
               CASE WHEN m.successful_logins IS DISTINCT FROM g.successful_logins THEN 'successful_logins ' || m.successful_logins || ' <> ' || g.successful_logins END,
               CASE WHEN m.activity_count IS DISTINCT FROM g.activity_count THEN 'activity_count ' || m.activity_count || ' <> ' || g.activity_count END,
               CASE WHEN m.total_activity_minutes IS DISTINCT FROM g.total_activity_minutes THEN 'total_activity_minutes ' || m.total_activity_minutes || ' <> ' || g.total_activity_minutes END,
               CASE WHEN m.total_page_views IS DISTINCT FROM g.total_page_views THEN 'total_page_views ' || m.total_page_views || ' <> ' || g.total_page_views END,
               CASE WHEN m.payment_count IS DISTINCT FROM g.payment_count THEN 'payment_count ' || m.payment_count || ' <> ' || g.payment_count END,
               CASE WHEN m.portfolio_count IS DISTINCT FROM g.portfolio_count THEN 'portfolio_count ' || m.portfolio_count || ' <> ' || g.portfolio_count END,
               CASE WHEN abs(m.total_transaction_amount - g.total_transaction_amount) > 0.01 THEN 'total_transaction_amount ' || m.total_transaction_amount || ' <> ' || g.total_transaction_amount END,
               CASE WHEN abs(m.avg_transaction_amount - g.avg_transaction_amount) > 0.01 THEN 'avg_transaction_amount ' || m.avg_transaction_amount || ' <> ' || g.avg_transaction_amount END,
               CASE WHEN abs(m.max_transaction_amount - g.max_transaction_amount) > 0.01 THEN 'max_transaction_amount ' || m.max_transaction_amount || ' <> ' || g.max_transaction_amount END,
               CASE WHEN abs(m.total_payment_amount - g.total_payment_amount) > 0.01 THEN 'total_payment_amount ' || m.total_payment_amount || ' <> ' || g.total_payment_amount END,
               CASE WHEN abs(m.portfolio_value - g.portfolio_value) > 0.01 THEN 'portfolio_value ' || m.portfolio_value || ' <> ' || g.portfolio_value END
           ) AS difference
    FROM (SELECT * FROM "{{schema}}".client_segmentation WHERE processing_date = DATE '{{processing_date}}') m
    FULL OUTER JOIN (SELECT * FROM "{{schema}}".client_segmentation_gp WHERE processing_date = DATE '{{processing_date}}') g
        ON g.client_id = m.client_id
) compared
WHERE difference <> ''
ORDER BY client_id
