-- Cleaning of bank_transactions, the rates' side (SPEC §4): per currency pair and calendar
-- day, the rate that closes the day (the latest rate_date of the day, compared as timestamps;
-- ties: the larger rate_id), with the pair's earliest rate (the earliest rate_date; ties: the
-- larger rate_id) for transactions dated before the pair's first day.
-- clean_bank_transactions.sql looks each transaction up in it. The stage computes it once per
-- run, before the transactions: a few rows per pair and day, where the rates are a million rows
-- at 5M clients and the transactions are deduplicated in several passes.
--
-- Tables: rates (this run's cleaned currency_rates).
WITH day_close AS (
    SELECT currency_pair, rate_day, rate_value
    FROM (
        SELECT currency_pair, CAST(rate_date AS DATE) AS rate_day, rate_value,
               ROW_NUMBER() OVER (PARTITION BY currency_pair, CAST(rate_date AS DATE)
                                  ORDER BY rate_date DESC, rate_id DESC) AS r
        FROM rates
        WHERE currency_pair IS NOT NULL
    ) d
    WHERE r = 1
),
earliest AS (
    SELECT currency_pair, rate_value
    FROM (
        SELECT currency_pair, rate_value,
               ROW_NUMBER() OVER (PARTITION BY currency_pair ORDER BY rate_date ASC, rate_id DESC) AS r
        FROM rates
        WHERE currency_pair IS NOT NULL
    ) e
    WHERE r = 1
)
SELECT d.currency_pair, d.rate_day, d.rate_value, e.rate_value AS earliest_value
FROM day_close d
JOIN earliest e ON e.currency_pair = d.currency_pair
