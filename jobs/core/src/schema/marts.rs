//! The marts (docs/SPEC.md §5, §6, §8) as data: each one's name, the SQL file that computes
//! it and the columns it has — declared once, checked against the SQL's output by a test, and
//! read by the sinks that load them.

/// One mart: a table the pipeline computes per processing date under `marts/`.
#[derive(Debug)]
pub struct Mart {
    pub name: &'static str,
    /// The SQL file (under `sql/`) whose result is the mart.
    pub sql: &'static str,
}

pub const CLIENT_SEGMENTATION: Mart = Mart {
    name: "client_segmentation",
    sql: "datafusion/segment.sql",
};
pub const MARKETING_CLIENTS: Mart = Mart {
    name: "marketing_clients",
    sql: "datafusion/marketing_clients.sql",
};
pub const TARGETED_OFFERS: Mart = Mart {
    name: "targeted_offers",
    sql: "datafusion/targeted_offers.sql",
};
pub const MARKETING_ANALYTICS_DAILY: Mart = Mart {
    name: "marketing_analytics_daily",
    sql: "datafusion/analytics_daily.sql",
};
/// The offer templates a day's offers were made from (`sql/offer_templates.csv`, checked).
pub const OFFER_TEMPLATES: Mart = Mart {
    name: "offer_templates",
    sql: "offer_templates.csv",
};

/// Every mart, in the order the stages write them.
pub const MARTS: [&Mart; 5] = [
    &CLIENT_SEGMENTATION,
    &OFFER_TEMPLATES,
    &MARKETING_CLIENTS,
    &TARGETED_OFFERS,
    &MARKETING_ANALYTICS_DAILY,
];
