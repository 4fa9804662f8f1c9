-- Cleaning of bank_transactions: deduplicate like every table (clean_dedup.sql: `repeated`,
-- `replaced` and `latest` are that rule), then add
-- amount_rub (SPEC §4): the amount in roubles at the <CURRENCY>/RUB rate in force on the
-- transaction date — the pair's rate with the latest rate_date on or before that date,
-- compared as calendar dates (ties: the larger rate_id); if there is none, the pair's
-- earliest rate; RUB = 1; a currency with no rate at all leaves amount_rub NULL.
--
-- Tables: parsed (typed transactions with _arrival), rate_lookup (each pair's closing rate per
-- day and its earliest rate, from this run's cleaned currency_rates: clean_rate_lookup.sql).
WITH repeated AS (
    SELECT transaction_id AS repeated_id
    FROM parsed
    GROUP BY transaction_id
    HAVING count(*) > 1
),
replaced AS (
    SELECT repeated_id, _arrival AS replaced_arrival
    FROM (
        SELECT r.repeated_id, p._arrival,
               LAG(r.repeated_id) OVER (ORDER BY r.repeated_id, p.transaction_date DESC, p._arrival DESC)
                   AS previous_id
        FROM repeated r
        JOIN parsed p ON p.transaction_id = r.repeated_id
    ) ordered
    WHERE previous_id = repeated_id
),
latest AS (
    SELECT transaction_id, client_id, transaction_date, amount, currency, transaction_type, channel
    FROM replaced r
    RIGHT ANTI JOIN parsed p ON p.transaction_id = r.repeated_id AND p._arrival = r.replaced_arrival
),
-- Few distinct (currency, day) pairs: the as-of lookup runs on them, not on every row. Taken
-- from every parsed row (a superset of the kept rows' pairs), so that `latest` is computed
-- once: DataFusion plans a CTE once per use.
transaction_days AS (
    SELECT DISTINCT currency, transaction_date
    FROM parsed
    WHERE currency IS NOT NULL AND currency <> 'RUB'
),
as_of AS (
    SELECT currency, transaction_date, rate_value
    FROM (
        SELECT t.currency, t.transaction_date, d.rate_value,
               ROW_NUMBER() OVER (PARTITION BY t.currency, t.transaction_date
                                  ORDER BY d.rate_day DESC) AS r
        FROM transaction_days t
        JOIN rate_lookup d
          ON d.currency_pair = t.currency || '/RUB' AND d.rate_day <= t.transaction_date
    ) a
    WHERE r = 1
),
earliest AS (
    SELECT DISTINCT currency_pair, earliest_value AS rate_value
    FROM rate_lookup
)
SELECT l.transaction_id, l.client_id, l.transaction_date, l.amount, l.currency,
       l.transaction_type, l.channel,
       CASE WHEN l.currency = 'RUB' THEN l.amount
            ELSE l.amount * COALESCE(a.rate_value, e.rate_value)
       END AS amount_rub
FROM earliest e
RIGHT JOIN (
    as_of a
    RIGHT JOIN latest l ON a.currency = l.currency AND a.transaction_date = l.transaction_date
) ON e.currency_pair = l.currency || '/RUB'
