-- A published table (docs/SPEC.md §7): the columns of its cleaned table or mart, then the
-- day it belongs to, which a publish replaces as a unit.
-- Placeholders: {{table}} (quoted "schema"."name"), {{columns}} (one `name TYPE [NOT NULL],`
-- line per column, from the declared schema), {{storage}} (empty for PostgreSQL; for
-- Greenplum a line break and sql/greenplum/storage.sql).
CREATE TABLE IF NOT EXISTS {{table}} (
{{columns}}
    processing_date DATE NOT NULL
){{storage}}
