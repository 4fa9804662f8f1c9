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
);

CREATE TABLE IF NOT EXISTS "bank"."currency_rates" (
    rate_id TEXT NOT NULL,
    currency_pair TEXT,
    rate_date TIMESTAMP NOT NULL,
    rate_value DOUBLE PRECISION NOT NULL,
    rate_type TEXT,
    processing_date DATE NOT NULL
);

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
);

CREATE TABLE IF NOT EXISTS "bank"."client_logins" (
    login_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    login_timestamp TIMESTAMP NOT NULL,
    ip_address TEXT,
    device_type TEXT,
    browser TEXT,
    success BOOLEAN,
    processing_date DATE NOT NULL
);

CREATE TABLE IF NOT EXISTS "bank"."client_activities" (
    activity_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    activity_date DATE NOT NULL,
    activity_type TEXT,
    duration_minutes INTEGER,
    page_views INTEGER,
    processing_date DATE NOT NULL
);

CREATE TABLE IF NOT EXISTS "bank"."payments" (
    payment_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    payment_date DATE NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    currency TEXT,
    payment_type TEXT,
    status TEXT,
    processing_date DATE NOT NULL
);

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
);

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
);

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
);

CREATE INDEX IF NOT EXISTS "client_segmentation_segment_idx" ON "bank"."client_segmentation" (segment);

CREATE INDEX IF NOT EXISTS "client_segmentation_city_idx" ON "bank"."client_segmentation" (city);

CREATE INDEX IF NOT EXISTS "client_segmentation_status_idx" ON "bank"."client_segmentation" (status);

DELETE FROM "bank"."clients" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."clients" (client_id, client_name, phone, email, birth_date, registration_date, city, segment, status, processing_date) FROM STDIN (FORMAT binary);

DELETE FROM "bank"."currency_rates" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."currency_rates" (rate_id, currency_pair, rate_date, rate_value, rate_type, processing_date) FROM STDIN (FORMAT binary);

DELETE FROM "bank"."bank_transactions" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."bank_transactions" (transaction_id, client_id, transaction_date, amount, currency, transaction_type, channel, amount_rub, processing_date) FROM STDIN (FORMAT binary);

DELETE FROM "bank"."client_logins" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."client_logins" (login_id, client_id, login_timestamp, ip_address, device_type, browser, success, processing_date) FROM STDIN (FORMAT binary);

DELETE FROM "bank"."client_activities" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."client_activities" (activity_id, client_id, activity_date, activity_type, duration_minutes, page_views, processing_date) FROM STDIN (FORMAT binary);

DELETE FROM "bank"."payments" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."payments" (payment_id, client_id, payment_date, amount, currency, payment_type, status, processing_date) FROM STDIN (FORMAT binary);

DELETE FROM "bank"."securities_portfolios" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."securities_portfolios" (portfolio_id, client_id, security_type, security_name, quantity, purchase_price, current_price, purchase_date, processing_date) FROM STDIN (FORMAT binary);

DELETE FROM "bank"."client_segmentation" WHERE processing_date = DATE '2024-06-01';

COPY "bank"."client_segmentation" (client_id, client_name, city, status, original_segment, transaction_count, total_transaction_amount, avg_transaction_amount, max_transaction_amount, login_count, successful_logins, activity_count, total_activity_minutes, total_page_views, payment_count, total_payment_amount, portfolio_count, portfolio_value, segment, portfolio_segment, transaction_segment, created_at, processing_date) FROM STDIN (FORMAT binary);
