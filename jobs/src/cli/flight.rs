//! `ebroker serve`: an Arrow Flight SQL endpoint over the warehouse catalog, for stock
//! JDBC/ADBC clients (DBeaver, Python ADBC). Queries run in the server's engine — in-process,
//! or on the Ballista cluster with `--cluster`. Built on arrow-flight's `FlightSqlService`
//! rather than Ballista's scheduler `flight-sql` feature: that one serves the scheduler's own
//! sessions, which know nothing of the warehouse's zones, so stock clients would see an empty
//! catalog.
//!
//! Served: statements (GetFlightInfo + DoGet), prepared statements without parameters (what
//! the JDBC driver uses), GetCatalogs, GetDbSchemas, GetTables (with column schemas),
//! GetTableTypes and GetSqlInfo. Optional bearer-token authentication: every call must carry
//! `authorization: Bearer <token>`, or get one from a Basic handshake whose password is the
//! token; both are compared in constant time.
//!
//! Read-only and bounded by construction: every statement is planned in a session of its own
//! (a copy of the warehouse session, so nothing one client sets reaches another) and refused
//! unless it is a query — no CREATE, DROP, INSERT, COPY or SET. A query runs within
//! `serve.query_timeout_secs` and a memory pool of `serve.query_memory_limit`, at most
//! `serve.max_concurrent_queries` at once. Without a token the server listens on a loopback
//! address only; `serve.tls_cert` and `serve.tls_key` switch on TLS.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::cli::catalog::{register_warehouse, CatalogTable};
use crate::config::ServeConfig;
use crate::engine::memory::QueryMemoryPool;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::warehouse::Warehouse;

type DoGetStream = Pin<Box<dyn Stream<Item = std::result::Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// What a refused statement is told.
const READ_ONLY: &str = "ebroker serve is read-only: only SELECT, SHOW and EXPLAIN queries are allowed";

/// How `ebroker serve` runs, resolved from `serve.*` before the warehouse is opened: the
/// address, the token, the gRPC server (with TLS or not) and the bounds of every query.
pub struct ServeSettings {
    address: SocketAddr,
    token: Option<String>,
    server: Server,
    tls: bool,
    limits: QueryLimits,
}

impl ServeSettings {
    /// The address Flight SQL listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bearer token clients must send, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Resolves `config` (checked by `Config::load`): reads the token file and the TLS files,
    /// and refuses a non-loopback address without a token.
    pub fn from_config(config: &ServeConfig) -> Result<ServeSettings> {
        let ip: IpAddr = config.host.parse().map_err(|_| {
            Error::Config(format!(
                "serve.host = {:?} is not an IP address; use 127.0.0.1",
                config.host
            ))
        })?;
        let address = SocketAddr::new(ip, config.port);
        let token = read_token(config)?;
        check_exposure(address, token.as_deref())?;
        let (server, tls) = grpc_server(config)?;
        Ok(ServeSettings {
            address,
            token,
            server,
            tls,
            limits: QueryLimits::from_config(config)?,
        })
    }
}

/// Refuses to serve the warehouse beyond this machine without a token: only a loopback
/// address (127.0.0.1, ::1) may go without one.
pub fn check_exposure(address: SocketAddr, token: Option<&str>) -> Result<()> {
    if address.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "serve.host = {} is not a loopback address, and without a token anyone who reaches {address} could read the warehouse; set serve.token (or EBROKER_SERVE__TOKEN), or pass --token-file FILE (serve.token_file), or listen on 127.0.0.1",
        address.ip()
    )))
}

/// The token: `serve.token`, or the trimmed content of `serve.token_file`; None for neither.
fn read_token(config: &ServeConfig) -> Result<Option<String>> {
    let (token, origin) = if config.token_file.is_empty() {
        (config.token.clone(), "serve.token".to_string())
    } else {
        let origin = format!("the file serve.token_file = {:?}", config.token_file);
        (token_from_file(&config.token_file)?, origin)
    };
    if token.is_empty() {
        return Ok(None);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Config(format!(
            "{origin} holds spaces or characters other than printable ASCII, which cannot travel in an authorization header; use e.g. the output of `openssl rand -hex 32`"
        )));
    }
    Ok(Some(token))
}

fn token_from_file(path: &str) -> Result<String> {
    let mut token = String::new();
    crate::config::read_secret_file("serve.token_file", path, &mut token)?;
    Ok(token)
}

/// The gRPC server, with TLS from `serve.tls_cert` and `serve.tls_key` when they are set;
/// true when it has TLS.
fn grpc_server(config: &ServeConfig) -> Result<(Server, bool)> {
    if config.tls_cert.is_empty() && config.tls_key.is_empty() {
        return Ok((Server::builder(), false));
    }
    let identity = Identity::from_pem(
        read_pem("tls_cert", &config.tls_cert)?,
        read_pem("tls_key", &config.tls_key)?,
    );
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .map_err(|e| {
            let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), |source| source.to_string());
            Error::Config(format!(
                "serve.tls_cert = {:?} and serve.tls_key = {:?} are not a PEM certificate and its private key ({cause})",
                config.tls_cert, config.tls_key
            ))
        })?;
    Ok((server, true))
}

fn read_pem(key: &str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "serve.{key} = {path:?} cannot be read ({e}); point it at a PEM file"
        ))
    })
}

/// The bounds of every query: its time, its memory, and how many run at once.
#[derive(Clone)]
struct QueryLimits {
    timeout: Duration,
    memory_limit: String,
    memory_bytes: usize,
    max_concurrent: usize,
    slots: Arc<Semaphore>,
}

impl QueryLimits {
    fn from_config(config: &ServeConfig) -> Result<QueryLimits> {
        Ok(QueryLimits {
            timeout: Duration::from_secs(config.query_timeout_secs),
            memory_limit: config.query_memory_limit.clone(),
            memory_bytes: config.query_memory_limit_bytes()?,
            max_concurrent: config.max_concurrent_queries,
            slots: Arc::new(Semaphore::new(config.max_concurrent_queries)),
        })
    }

    /// A slot for one more query, held until its results are sent; RESOURCE_EXHAUSTED when
    /// every slot is taken.
    fn slot(&self) -> std::result::Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} queries are already running, the limit of this server (serve.max_concurrent_queries); retry when one has finished, or raise serve.max_concurrent_queries",
                self.max_concurrent
            ))
        })
    }
}

/// The status of a query stopped at serve.query_timeout_secs.
fn deadline_exceeded(limit: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "the query ran longer than {} s, the limit of this server (serve.query_timeout_secs); narrow it (a filter on processing_date, a LIMIT), or raise serve.query_timeout_secs",
        limit.as_secs()
    ))
}

/// The status of a query that failed while running: RESOURCE_EXHAUSTED naming
/// serve.query_memory_limit when it ran out of memory.
fn query_failed(error: DataFusionError, memory_limit: &str) -> Status {
    if matches!(error.find_root(), DataFusionError::ResourcesExhausted(_)) {
        return Status::resource_exhausted(format!(
            "the query needs more memory than serve.query_memory_limit = {memory_limit} ({error}); narrow it, or raise serve.query_memory_limit"
        ));
    }
    Status::internal(error.to_string())
}

/// What a client may run: queries only — no DDL (CREATE, DROP), no DML (INSERT, COPY), no
/// statements (SET, transactions, PREPARE).
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans `sql` in `session` unless it is more than a query: the three steps of
/// `SessionContext::sql_with_options(sql, read_only())`, taken one by one so that a refusal
/// (PERMISSION_DENIED, before anything runs) is told apart from a mistake in the SQL.
async fn plan_read_only(session: &SessionContext, sql: &str) -> std::result::Result<DataFrame, Status> {
    let invalid = |e: DataFusionError| Status::invalid_argument(e.to_string());
    let plan = session.state().create_logical_plan(sql).await.map_err(invalid)?;
    read_only()
        .verify_plan(&plan)
        .map_err(|e| Status::permission_denied(format!("{READ_ONLY}; refused: {e}")))?;
    session.execute_logical_plan(plan).await.map_err(invalid)
}

/// A session for one query: a copy of `base`'s state — the same catalog (so the warehouse's
/// tables), functions, options and session id — with a memory pool of `memory_bytes` of its
/// own; whatever the query changes stays in the copy. On a cluster the pool bounds only the
/// client's part of a query: the executors run it under their own engine.memory_limit.
fn query_session(base: &SessionContext, memory_bytes: usize) -> SessionContext {
    let state = base.state();
    let mut runtime = RuntimeEnv::clone(state.runtime_env());
    runtime.memory_pool = Arc::new(QueryMemoryPool::new(memory_bytes));
    let session_id = state.session_id().to_string();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_session_id(session_id)
        .with_runtime_env(Arc::new(runtime))
        .build();
    SessionContext::new_with_state(state)
}

/// `flight` cut short with DEADLINE_EXCEEDED at `deadline` (`limit` after the query started),
/// holding the query's `slot` until the stream ends or the client goes away; dropping the
/// stream cancels the query.
fn bounded(flight: DoGetStream, deadline: Instant, limit: Duration, slot: OwnedSemaphorePermit) -> DoGetStream {
    Box::pin(futures::stream::unfold(Some((flight, slot)), move |state| async move {
        let (mut flight, slot) = state?;
        match tokio::time::timeout_at(deadline, flight.next()).await {
            Ok(Some(item)) => Some((item, Some((flight, slot)))),
            Ok(None) => None,
            Err(_) => Some((Err(deadline_exceeded(limit)), None)),
        }
    }))
}

/// Whether `sent` equals `token`, in a time that depends on the length of `sent` only: every
/// byte of it is compared (with the token repeated to its length) and the length check is
/// folded in, so neither a wrong length nor the first wrong byte ends the comparison early.
pub(crate) fn same_token(sent: &[u8], token: &[u8]) -> bool {
    let padded: Vec<u8> = token.iter().copied().cycle().take(sent.len()).collect();
    let same_length = sent.len().ct_eq(&token.len());
    (sent.ct_eq(padded.as_slice()) & same_length).into()
}

/// Whether the `authorization` value `header` is `Bearer <token>`.
fn bearer_ok(header: &str, token: &str) -> bool {
    header
        .strip_prefix("Bearer ")
        .is_some_and(|sent| same_token(sent.as_bytes(), token.as_bytes()))
}

/// Whether the `authorization` value `header` is `Basic base64(user:token)` (padded or not:
/// the Go client of ADBC sends it unpadded).
fn basic_ok(header: &str, token: &str) -> bool {
    let decoded = header.strip_prefix("Basic ").and_then(|b| {
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            b.trim_end_matches('='),
        )
        .ok()
    });
    decoded.is_some_and(|userpass| {
        let password = userpass.splitn(2, |&b| b == b':').nth(1).unwrap_or_default();
        same_token(password, token.as_bytes())
    })
}

/// The `authorization` header of `request`, or "".
fn authorization<T>(request: &Request<T>) -> &str {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The Flight SQL service over one engine and its warehouse catalog.
pub struct WarehouseFlightSql {
    /// The warehouse session every query's own session is copied from; it never runs a
    /// client's SQL.
    engine: Engine,
    catalog_name: String,
    tables: Vec<CatalogTable>,
    token: Option<String>,
    limits: QueryLimits,
    sql_info: SqlInfoData,
}

impl WarehouseFlightSql {
    /// Registers the warehouse's tables in `engine` and serves them with `settings`' token and
    /// query limits.
    pub async fn new(engine: Engine, warehouse: &Warehouse, settings: &ServeSettings) -> Result<Self> {
        let tables = register_warehouse(&engine, warehouse).await?;
        let catalog_name = engine
            .context()
            .state()
            .config()
            .options()
            .catalog
            .default_catalog
            .clone();
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "ebroker");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        let sql_info = info.build().map_err(|e| Error::Stage {
            stage: "serve".into(),
            message: format!("building Flight SQL server info: {e}"),
        })?;
        Ok(WarehouseFlightSql {
            engine,
            catalog_name,
            tables,
            token: settings.token.clone(),
            limits: settings.limits.clone(),
            sql_info,
        })
    }

    fn check_token<T>(&self, request: &Request<T>) -> std::result::Result<(), Status> {
        let Some(token) = &self.token else { return Ok(()) };
        if bearer_ok(authorization(request), token) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "this server needs `authorization: Bearer <token>` (its serve.token or the content of serve.token_file)",
            ))
        }
    }

    /// Plans `sql`, read-only, in a session of its own.
    async fn plan(&self, sql: &str) -> std::result::Result<DataFrame, Status> {
        plan_read_only(&query_session(self.engine.context(), self.limits.memory_bytes), sql).await
    }

    /// Runs `sql` in a slot of serve.max_concurrent_queries, within serve.query_timeout_secs.
    async fn execute(&self, sql: &str) -> std::result::Result<Response<DoGetStream>, Status> {
        let slot = self.limits.slot()?;
        let limit = self.limits.timeout;
        let deadline = Instant::now() + limit;
        let (schema, batches) = tokio::time::timeout_at(deadline, self.start(sql))
            .await
            .unwrap_or_else(|_| Err(deadline_exceeded(limit)))?;
        let memory_limit = self.limits.memory_limit.clone();
        let batches = batches.map_err(move |e| FlightError::Tonic(Box::new(query_failed(e, &memory_limit))));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(bounded(Box::pin(flight), deadline, limit, slot)))
    }

    /// Plans `sql` and starts it: the result's schema and its batches.
    async fn start(&self, sql: &str) -> std::result::Result<(SchemaRef, SendableRecordBatchStream), Status> {
        let df = self.plan(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df
            .execute_stream()
            .await
            .map_err(|e| query_failed(e, &self.limits.memory_limit))?;
        Ok((schema, batches))
    }

    fn info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn one_batch<E: Into<FlightError> + Send + 'static>(
        schema: SchemaRef,
        batch: std::result::Result<RecordBatch, E>,
    ) -> Response<DoGetStream> {
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch.map_err(Into::into) }))
            .map_err(Status::from);
        Response::new(Box::pin(flight))
    }

    async fn table_schema(&self, table: &CatalogTable) -> std::result::Result<SchemaRef, Status> {
        let reference = datafusion::common::TableReference::partial(table.schema.as_str(), table.table.as_str());
        let provider = self
            .engine
            .context()
            .table_provider(reference)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(provider.schema())
    }
}

fn utf8(bytes: &[u8]) -> std::result::Result<&str, Status> {
    std::str::from_utf8(bytes).map_err(|_| Status::invalid_argument("the handle is not UTF-8 SQL"))
}

#[tonic::async_trait]
impl FlightSqlService for WarehouseFlightSql {
    type FlightService = WarehouseFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<
        Response<Pin<Box<dyn Stream<Item = std::result::Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter(vec![Ok(HandshakeResponse {
                protocol_version: 0,
                payload: Default::default(),
            })])));
        let Some(token) = &self.token else { return Ok(response) };
        let header = authorization(&request);
        if !basic_ok(header, token) && !bearer_ok(header, token) {
            return Err(Status::unauthenticated(
                "wrong credentials: use the server's token (serve.token or the content of serve.token_file) as the password or bearer token",
            ));
        }
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("token is not a header value"))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        let df = self.plan(&query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        }
        .as_any()
        .encode_to_vec();
        Self::info(df.schema().as_arrow(), ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.check_token(&request)?;
        self.execute(utf8(&ticket.statement_handle)?).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        self.check_token(&request)?;
        let df = self.plan(&query.query).await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(df.schema().as_arrow(), &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> std::result::Result<(), Status> {
        self.check_token(&request)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        let df = self.plan(utf8(&query.prepared_statement_handle)?).await?;
        let ticket = query.as_any().encode_to_vec();
        Self::info(df.schema().as_arrow(), ticket, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.check_token(&request)?;
        self.execute(utf8(&query.prepared_statement_handle)?).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        let schema = query.into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.check_token(&request)?;
        let mut builder = query.into_builder();
        builder.append(&self.catalog_name);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.check_token(&request)?;
        let mut builder = query.into_builder();
        for zone in crate::cli::catalog::ZONES {
            builder.append(&self.catalog_name, zone.dir());
        }
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.check_token(&request)?;
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        for table in &self.tables {
            let schema = if include_schema {
                self.table_schema(table).await?
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(&self.catalog_name, &table.schema, &table.table, "TABLE", &schema)
                .map_err(Status::from)?;
        }
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        Self::info(
            &table_types_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.check_token(&request)?;
        let schema = Arc::new(table_types_schema());
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(vec!["TABLE"]))]);
        Ok(Self::one_batch(schema, batch))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.check_token(&request)?;
        let builder = query.into_builder(&self.sql_info);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn table_types_schema() -> Schema {
    Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
}

/// Serves `service` as `settings` say until Ctrl-C or SIGTERM.
pub async fn serve(service: WarehouseFlightSql, settings: ServeSettings) -> Result<()> {
    let address = settings.address;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(Error::io(format!("tcp://{address}")))?;
    let local = listener.local_addr().map_err(Error::io(format!("tcp://{address}")))?;
    println!(
        "Flight SQL on {}://{local}: {} tables, read-only, {} ({} queries at once)",
        if settings.tls { "grpc+tls" } else { "grpc" },
        service.tables.len(),
        if service.token.is_some() {
            "bearer token required"
        } else {
            "no authentication"
        },
        settings.limits.max_concurrent
    );
    let incoming = tokio_stream_from(listener);
    let mut server = settings.server;
    server
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await
        .map_err(|e| Error::Stage {
            stage: "serve".into(),
            message: format!("the Flight SQL server on {local} stopped: {e}"),
        })
}

fn tokio_stream_from(listener: tokio::net::TcpListener) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool};
    use datafusion::prelude::SessionConfig;

    use super::*;
    use crate::config::Config;

    #[test]
    fn tokens_match_only_whole_and_exact() {
        assert!(same_token(b"s3cret", b"s3cret"));
        let wrong: [&[u8]; 5] = [b"s3creT", b"s3cre", b"s3crets", b"", b"s3crets3cret"];
        for sent in wrong {
            assert!(!same_token(sent, b"s3cret"), "{sent:?}");
        }
    }

    #[test]
    fn bearer_and_basic_credentials_carry_the_token() {
        assert!(bearer_ok("Bearer s3cret", "s3cret"));
        assert!(!bearer_ok("Bearer s3cre", "s3cret") && !bearer_ok("s3cret", "s3cret"));
        let standard = base64::engine::general_purpose::STANDARD;
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD;
        assert!(basic_ok(
            &format!("Basic {}", standard.encode("analyst:s3cret")),
            "s3cret"
        ));
        assert!(basic_ok(
            &format!("Basic {}", unpadded.encode("analyst:s3cret")),
            "s3cret"
        ));
        assert!(!basic_ok(
            &format!("Basic {}", standard.encode("analyst:s3cre")),
            "s3cret"
        ));
        assert!(!basic_ok(&format!("Basic {}", standard.encode("s3cret")), "s3cret"));
        assert!(!basic_ok("Bearer s3cret", "s3cret"));
    }

    #[test]
    fn only_a_loopback_address_goes_without_a_token() {
        let public: SocketAddr = "0.0.0.0:50070".parse().unwrap();
        for local in ["127.0.0.1:50070", "[::1]:50070"] {
            assert!(check_exposure(local.parse().unwrap(), None).is_ok(), "{local}");
        }
        assert!(check_exposure(public, Some("s3cret")).is_ok());
        for token in [None, Some("")] {
            let err = check_exposure(public, token).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.exit_code(), 2, "{text}");
            assert!(
                text.contains("0.0.0.0") && text.contains("serve.token") && text.contains("--token-file"),
                "{text}"
            );
        }
    }

    fn config(flags: &[(&str, String)]) -> Result<Config> {
        let flags: Vec<(String, String)> = flags.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Config::load_from(None, &[], &flags)
    }

    fn quoted(path: &std::path::Path) -> String {
        format!("{:?}", path.display().to_string())
    }

    #[test]
    fn settings_read_the_token_file_and_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret\n").unwrap();
        let public = ("serve.host", "\"0.0.0.0\"".to_string());
        let flags = [
            public,
            ("serve.token", "other".into()),
            ("serve.token_file", quoted(&file)),
        ];
        let c = config(&flags).unwrap();
        let Ok(settings) = ServeSettings::from_config(&c.serve) else {
            panic!("a public address with a token file is served")
        };
        assert_eq!(
            settings.token.as_deref(),
            Some("s3cret"),
            "the file replaces serve.token"
        );
        assert!(!settings.tls);

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        for (path, why) in [(empty, "is empty"), (dir.path().join("missing"), "cannot be read")] {
            let c = config(&[("serve.token_file", quoted(&path))]).unwrap();
            let Err(err) = ServeSettings::from_config(&c.serve) else {
                panic!("{} is not a token", path.display())
            };
            let text = err.to_string();
            assert!(
                text.contains(&path.display().to_string()) && text.contains(why),
                "{text}"
            );
        }

        let missing = dir.path().join("cert.pem");
        let c = config(&[("serve.tls_cert", quoted(&missing)), ("serve.tls_key", quoted(&file))]).unwrap();
        let Err(err) = ServeSettings::from_config(&c.serve) else {
            panic!("TLS without a certificate")
        };
        assert!(
            err.to_string().contains("serve.tls_cert") && err.to_string().contains("cert.pem"),
            "{err}"
        );
        let err = config(&[("serve.tls_cert", quoted(&missing))]).unwrap_err().to_string();
        assert!(err.contains("serve.tls_key") && err.contains("cert.pem"), "{err}");
    }

    #[test]
    fn query_limits_are_checked() {
        for (key, value) in [
            ("serve.query_timeout_secs", "0"),
            ("serve.max_concurrent_queries", "0"),
            ("serve.query_memory_limit", "\"lots\""),
        ] {
            let err = config(&[(key, value.to_string())]).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[tokio::test]
    async fn only_queries_are_planned() {
        let base = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
        base.sql("CREATE TABLE t AS VALUES (1), (2)").await.unwrap();
        let session = query_session(&base, 1 << 20);
        let dir = tempfile::tempdir().unwrap();
        let stolen = dir.path().join("stolen.csv");
        for sql in [
            "CREATE EXTERNAL TABLE leak (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname'".to_string(),
            format!("COPY (SELECT * FROM t) TO '{}' STORED AS CSV", stolen.display()),
            format!(
                "EXPLAIN ANALYZE COPY (SELECT 1) TO '{}' STORED AS CSV",
                stolen.display()
            ),
            "INSERT INTO t VALUES (3)".to_string(),
            "SET datafusion.execution.batch_size = 1".to_string(),
            "DROP TABLE t".to_string(),
        ] {
            let status = plan_read_only(&session, &sql).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{sql}: {status}");
            assert!(status.message().starts_with(READ_ONLY), "{}", status.message());
        }
        assert!(!stolen.exists(), "COPY wrote {}", stolen.display());
        let rows = plan_read_only(&session, "SELECT count(*) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(crate::engine::scalar_u64(&rows), 2, "the table is still whole");
        for sql in ["SHOW TABLES", "EXPLAIN SELECT * FROM t", "DESCRIBE t"] {
            plan_read_only(&session, sql).await.unwrap();
        }
        let typo = plan_read_only(&session, "SELEC 1").await.unwrap_err();
        assert_eq!(typo.code(), tonic::Code::InvalidArgument, "{typo}");
    }

    #[tokio::test]
    async fn a_query_session_shares_the_tables_but_not_its_settings() {
        let base = SessionContext::new();
        base.sql("CREATE TABLE t AS VALUES (1)").await.unwrap();
        let session = query_session(&base, 1 << 20);
        session.sql("SET datafusion.execution.batch_size = 7").await.unwrap();
        assert_eq!(session.copied_config().batch_size(), 7);
        assert_ne!(base.copied_config().batch_size(), 7);
        assert_ne!(query_session(&base, 1 << 20).copied_config().batch_size(), 7);
        let limit = MemoryPool::memory_limit(&*session.runtime_env().memory_pool);
        assert!(matches!(limit, MemoryLimit::Finite(n) if n == 1 << 20));
        let base_limit = MemoryPool::memory_limit(&*base.runtime_env().memory_pool);
        assert!(matches!(base_limit, MemoryLimit::Infinite));
        let rows = session
            .sql("SELECT count(*) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(crate::engine::scalar_u64(&rows), 1);
    }
}
