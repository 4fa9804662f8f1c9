-- The PXF external table over one day of a table's Parquet (docs/SPEC.md §7). PXF cannot read
-- Parquet INT64 timestamps (greenplum-db/pxf#918): timestamps are declared BIGINT (the
-- microseconds the files hold) and integers and money the BIGINT and DOUBLE PRECISION they
-- are in Parquet; sql/greenplum/pxf_load.sql converts them.
-- Placeholders: {{external}} (quoted name), {{columns}} (one `name TYPE` line per column,
-- comma-separated), {{location}} (pxf://<root>/<zone>/<table>/processing_date=D?PROFILE=...).
CREATE READABLE EXTERNAL TABLE {{external}} (
{{columns}}
)
LOCATION ('{{location}}')
FORMAT 'CUSTOM' (FORMATTER='pxfwritable_import')
