-- Marketing view of each client (SPEC §6, ClickHouse marketing_clients of §8): the combined
-- segment, priority level, activity score and total value.
-- Tables: client_segmentation (the processing date's mart). Placeholders: {{processing_date}}.
SELECT client_id, client_name, segment, portfolio_segment, transaction_segment,
       CASE
           WHEN segment = 'VIP' AND login_count >= 5 THEN 'VIP Active'
           WHEN segment = 'VIP' THEN 'VIP Passive'
           WHEN segment = 'Premium' AND login_count >= 10 THEN 'Premium Active'
           WHEN segment = 'Premium' THEN 'Premium Passive'
           WHEN segment = 'Standard' AND login_count >= 5 THEN 'Standard Active'
           WHEN segment = 'Standard' THEN 'Standard Passive'
           WHEN transaction_count > 0 THEN 'Transaction Only'
           ELSE 'Low Engagement'
       END AS combined_segment,
       total_transaction_amount AS total_value,
       portfolio_value,
       login_count + activity_count AS activity_score,
       CASE segment WHEN 'VIP' THEN 1 WHEN 'Premium' THEN 2 WHEN 'Standard' THEN 3 ELSE 4 END AS priority_level,
       status,
       -- microseconds: Spark 3.5 cannot read Parquet TIMESTAMP(NANOS) (docs/SPEC.md §5)
       arrow_cast('{{processing_date}} 00:00:00', 'Timestamp(Microsecond, None)') AS last_updated
FROM client_segmentation
ORDER BY client_id
