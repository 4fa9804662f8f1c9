CREATE SCHEMA IF NOT EXISTS "bank";

CREATE TABLE IF NOT EXISTS "bank"."clients" (
    client_id TEXT NOT NULL,
    client_name TEXT,
    phone TEXT,
    email TEXT,
    birth_date DATE,
    registration_date DATE NOT NULL,
    city TEXT,
    segment TEXT,
    status TEXT,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE TABLE IF NOT EXISTS "bank"."currency_rates" (
    rate_id TEXT NOT NULL,
    currency_pair TEXT,
    rate_date TIMESTAMP NOT NULL,
    rate_value DOUBLE PRECISION NOT NULL,
    rate_type TEXT,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (rate_id);

CREATE TABLE IF NOT EXISTS "bank"."bank_transactions" (
    transaction_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    transaction_date DATE NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    currency TEXT,
    transaction_type TEXT,
    channel TEXT,
    amount_rub DOUBLE PRECISION,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE TABLE IF NOT EXISTS "bank"."client_logins" (
    login_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    login_timestamp TIMESTAMP NOT NULL,
    ip_address TEXT,
    device_type TEXT,
    browser TEXT,
    success BOOLEAN,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE TABLE IF NOT EXISTS "bank"."client_activities" (
    activity_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    activity_date DATE NOT NULL,
    activity_type TEXT,
    duration_minutes INTEGER,
    page_views INTEGER,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE TABLE IF NOT EXISTS "bank"."payments" (
    payment_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    payment_date DATE NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    currency TEXT,
    payment_type TEXT,
    status TEXT,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE TABLE IF NOT EXISTS "bank"."securities_portfolios" (
    portfolio_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    security_type TEXT,
    security_name TEXT,
    quantity INTEGER NOT NULL,
    purchase_price DOUBLE PRECISION NOT NULL,
    current_price DOUBLE PRECISION NOT NULL,
    purchase_date DATE NOT NULL,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE TABLE IF NOT EXISTS "bank"."client_segmentation" (
    client_id TEXT NOT NULL,
    client_name TEXT,
    city TEXT,
    status TEXT,
    original_segment TEXT,
    transaction_count BIGINT NOT NULL,
    total_transaction_amount NUMERIC(18,2) NOT NULL,
    avg_transaction_amount NUMERIC(18,2),
    max_transaction_amount NUMERIC(18,2) NOT NULL,
    login_count BIGINT NOT NULL,
    successful_logins BIGINT NOT NULL,
    activity_count BIGINT NOT NULL,
    total_activity_minutes BIGINT NOT NULL,
    total_page_views BIGINT NOT NULL,
    payment_count BIGINT NOT NULL,
    total_payment_amount NUMERIC(18,2) NOT NULL,
    portfolio_count BIGINT NOT NULL,
    portfolio_value NUMERIC(18,2) NOT NULL,
    segment TEXT NOT NULL,
    portfolio_segment TEXT NOT NULL,
    transaction_segment TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE TABLE IF NOT EXISTS "bank"."client_segmentation_gp" (
    client_id TEXT NOT NULL,
    client_name TEXT,
    city TEXT,
    status TEXT,
    original_segment TEXT,
    transaction_count BIGINT NOT NULL,
    total_transaction_amount NUMERIC(18,2) NOT NULL,
    avg_transaction_amount NUMERIC(18,2),
    max_transaction_amount NUMERIC(18,2) NOT NULL,
    login_count BIGINT NOT NULL,
    successful_logins BIGINT NOT NULL,
    activity_count BIGINT NOT NULL,
    total_activity_minutes BIGINT NOT NULL,
    total_page_views BIGINT NOT NULL,
    payment_count BIGINT NOT NULL,
    total_payment_amount NUMERIC(18,2) NOT NULL,
    portfolio_count BIGINT NOT NULL,
    portfolio_value NUMERIC(18,2) NOT NULL,
    segment TEXT NOT NULL,
    portfolio_segment TEXT NOT NULL,
    transaction_segment TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    processing_date DATE NOT NULL
)
WITH (APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3)
DISTRIBUTED BY (client_id);

CREATE INDEX IF NOT EXISTS "client_segmentation_segment_idx" ON "bank"."client_segmentation" (segment);

CREATE INDEX IF NOT EXISTS "client_segmentation_city_idx" ON "bank"."client_segmentation" (city);

CREATE INDEX IF NOT EXISTS "client_segmentation_status_idx" ON "bank"."client_segmentation" (status);

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_clients";

CREATE READABLE EXTERNAL TABLE "bank"."ext_clients" (
    client_id TEXT,
    client_name TEXT,
    phone TEXT,
    email TEXT,
    birth_date DATE,
    registration_date DATE,
    city TEXT,
    segment TEXT,
    status TEXT
)
LOCATION ('pxf://data/bank/cleaned/clients/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."clients" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."clients" (client_id, client_name, phone, email, birth_date, registration_date, city, segment, status, processing_date)
SELECT client_id, client_name, phone, email, birth_date, registration_date, city, segment, status, DATE '2024-06-01'
FROM (
    SELECT client_id,
           client_name,
           phone,
           email,
           birth_date,
           registration_date,
           city,
           segment,
           status,
           row_number() OVER (PARTITION BY client_id ORDER BY registration_date DESC) AS load_rank
    FROM "bank"."ext_clients"
) deduplicated
WHERE load_rank = 1;

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_currency_rates";

CREATE READABLE EXTERNAL TABLE "bank"."ext_currency_rates" (
    rate_id TEXT,
    currency_pair TEXT,
    rate_date BIGINT,
    rate_value DOUBLE PRECISION,
    rate_type TEXT
)
LOCATION ('pxf://data/bank/cleaned/currency_rates/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."currency_rates" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."currency_rates" (rate_id, currency_pair, rate_date, rate_value, rate_type, processing_date)
SELECT rate_id, currency_pair, rate_date, rate_value, rate_type, DATE '2024-06-01'
FROM (
    SELECT rate_id,
           currency_pair,
           (to_timestamp(rate_date / 1000000.0) AT TIME ZONE 'UTC')::TIMESTAMP AS rate_date,
           rate_value,
           rate_type,
           row_number() OVER (PARTITION BY rate_id ORDER BY rate_date DESC) AS load_rank
    FROM "bank"."ext_currency_rates"
) deduplicated
WHERE load_rank = 1;

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_bank_transactions";

CREATE READABLE EXTERNAL TABLE "bank"."ext_bank_transactions" (
    transaction_id TEXT,
    client_id TEXT,
    transaction_date DATE,
    amount DOUBLE PRECISION,
    currency TEXT,
    transaction_type TEXT,
    channel TEXT,
    amount_rub DOUBLE PRECISION
)
LOCATION ('pxf://data/bank/cleaned/bank_transactions/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."bank_transactions" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."bank_transactions" (transaction_id, client_id, transaction_date, amount, currency, transaction_type, channel, amount_rub, processing_date)
SELECT transaction_id, client_id, transaction_date, amount, currency, transaction_type, channel, amount_rub, DATE '2024-06-01'
FROM (
    SELECT transaction_id,
           client_id,
           transaction_date,
           amount,
           currency,
           transaction_type,
           channel,
           amount_rub,
           row_number() OVER (PARTITION BY transaction_id ORDER BY transaction_date DESC) AS load_rank
    FROM "bank"."ext_bank_transactions"
) deduplicated
WHERE load_rank = 1;

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_client_logins";

CREATE READABLE EXTERNAL TABLE "bank"."ext_client_logins" (
    login_id TEXT,
    client_id TEXT,
    login_timestamp BIGINT,
    ip_address TEXT,
    device_type TEXT,
    browser TEXT,
    success BOOLEAN
)
LOCATION ('pxf://data/bank/cleaned/client_logins/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."client_logins" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."client_logins" (login_id, client_id, login_timestamp, ip_address, device_type, browser, success, processing_date)
SELECT login_id, client_id, login_timestamp, ip_address, device_type, browser, success, DATE '2024-06-01'
FROM (
    SELECT login_id,
           client_id,
           (to_timestamp(login_timestamp / 1000000.0) AT TIME ZONE 'UTC')::TIMESTAMP AS login_timestamp,
           ip_address,
           device_type,
           browser,
           success,
           row_number() OVER (PARTITION BY login_id ORDER BY login_timestamp DESC) AS load_rank
    FROM "bank"."ext_client_logins"
) deduplicated
WHERE load_rank = 1;

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_client_activities";

CREATE READABLE EXTERNAL TABLE "bank"."ext_client_activities" (
    activity_id TEXT,
    client_id TEXT,
    activity_date DATE,
    activity_type TEXT,
    duration_minutes BIGINT,
    page_views BIGINT
)
LOCATION ('pxf://data/bank/cleaned/client_activities/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."client_activities" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."client_activities" (activity_id, client_id, activity_date, activity_type, duration_minutes, page_views, processing_date)
SELECT activity_id, client_id, activity_date, activity_type, duration_minutes, page_views, DATE '2024-06-01'
FROM (
    SELECT activity_id,
           client_id,
           activity_date,
           activity_type,
           duration_minutes,
           page_views,
           row_number() OVER (PARTITION BY activity_id ORDER BY activity_date DESC) AS load_rank
    FROM "bank"."ext_client_activities"
) deduplicated
WHERE load_rank = 1;

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_payments";

CREATE READABLE EXTERNAL TABLE "bank"."ext_payments" (
    payment_id TEXT,
    client_id TEXT,
    payment_date DATE,
    amount DOUBLE PRECISION,
    currency TEXT,
    payment_type TEXT,
    status TEXT
)
LOCATION ('pxf://data/bank/cleaned/payments/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."payments" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."payments" (payment_id, client_id, payment_date, amount, currency, payment_type, status, processing_date)
SELECT payment_id, client_id, payment_date, amount, currency, payment_type, status, DATE '2024-06-01'
FROM (
    SELECT payment_id,
           client_id,
           payment_date,
           amount,
           currency,
           payment_type,
           status,
           row_number() OVER (PARTITION BY payment_id ORDER BY payment_date DESC) AS load_rank
    FROM "bank"."ext_payments"
) deduplicated
WHERE load_rank = 1;

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_securities_portfolios";

CREATE READABLE EXTERNAL TABLE "bank"."ext_securities_portfolios" (
    portfolio_id TEXT,
    client_id TEXT,
    security_type TEXT,
    security_name TEXT,
    quantity BIGINT,
    purchase_price DOUBLE PRECISION,
    current_price DOUBLE PRECISION,
    purchase_date DATE
)
LOCATION ('pxf://data/bank/cleaned/securities_portfolios/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."securities_portfolios" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."securities_portfolios" (portfolio_id, client_id, security_type, security_name, quantity, purchase_price, current_price, purchase_date, processing_date)
SELECT portfolio_id, client_id, security_type, security_name, quantity, purchase_price, current_price, purchase_date, DATE '2024-06-01'
FROM (
    SELECT portfolio_id,
           client_id,
           security_type,
           security_name,
           quantity,
           purchase_price,
           current_price,
           purchase_date,
           row_number() OVER (PARTITION BY portfolio_id ORDER BY purchase_date DESC) AS load_rank
    FROM "bank"."ext_securities_portfolios"
) deduplicated
WHERE load_rank = 1;

DROP EXTERNAL TABLE IF EXISTS "bank"."ext_client_segmentation";

CREATE READABLE EXTERNAL TABLE "bank"."ext_client_segmentation" (
    client_id TEXT,
    client_name TEXT,
    city TEXT,
    status TEXT,
    original_segment TEXT,
    transaction_count BIGINT,
    total_transaction_amount DOUBLE PRECISION,
    avg_transaction_amount DOUBLE PRECISION,
    max_transaction_amount DOUBLE PRECISION,
    login_count BIGINT,
    successful_logins BIGINT,
    activity_count BIGINT,
    total_activity_minutes BIGINT,
    total_page_views BIGINT,
    payment_count BIGINT,
    total_payment_amount DOUBLE PRECISION,
    portfolio_count BIGINT,
    portfolio_value DOUBLE PRECISION,
    segment TEXT,
    portfolio_segment TEXT,
    transaction_segment TEXT,
    created_at BIGINT
)
LOCATION ('pxf://data/bank/marts/client_segmentation/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import');

DELETE FROM "bank"."client_segmentation" WHERE processing_date = DATE '2024-06-01';

INSERT INTO "bank"."client_segmentation" (client_id, client_name, city, status, original_segment, transaction_count, total_transaction_amount, avg_transaction_amount, max_transaction_amount, login_count, successful_logins, activity_count, total_activity_minutes, total_page_views, payment_count, total_payment_amount, portfolio_count, portfolio_value, segment, portfolio_segment, transaction_segment, created_at, processing_date)
SELECT client_id, client_name, city, status, original_segment, transaction_count, total_transaction_amount, avg_transaction_amount, max_transaction_amount, login_count, successful_logins, activity_count, total_activity_minutes, total_page_views, payment_count, total_payment_amount, portfolio_count, portfolio_value, segment, portfolio_segment, transaction_segment, created_at, DATE '2024-06-01'
FROM (
    SELECT client_id,
           client_name,
           city,
           status,
           original_segment,
           transaction_count,
           round(total_transaction_amount::NUMERIC, 2) AS total_transaction_amount,
           round(avg_transaction_amount::NUMERIC, 2) AS avg_transaction_amount,
           round(max_transaction_amount::NUMERIC, 2) AS max_transaction_amount,
           login_count,
           successful_logins,
           activity_count,
           total_activity_minutes,
           total_page_views,
           payment_count,
           round(total_payment_amount::NUMERIC, 2) AS total_payment_amount,
           portfolio_count,
           round(portfolio_value::NUMERIC, 2) AS portfolio_value,
           segment,
           portfolio_segment,
           transaction_segment,
           (to_timestamp(created_at / 1000000.0) AT TIME ZONE 'UTC')::TIMESTAMP AS created_at,
           row_number() OVER (PARTITION BY client_id ORDER BY client_id) AS load_rank
    FROM "bank"."ext_client_segmentation"
) deduplicated
WHERE load_rank = 1;
