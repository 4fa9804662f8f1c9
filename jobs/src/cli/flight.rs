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
//! token.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

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
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::cli::catalog::{register_warehouse, CatalogTable};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::warehouse::Warehouse;

type DoGetStream = Pin<Box<dyn Stream<Item = std::result::Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// The Flight SQL service over one engine and its warehouse catalog.
pub struct WarehouseFlightSql {
    engine: Arc<Engine>,
    catalog_name: String,
    tables: Vec<CatalogTable>,
    token: Option<String>,
    sql_info: SqlInfoData,
}

impl WarehouseFlightSql {
    /// Registers the warehouse's tables in `engine` and serves them.
    pub async fn new(engine: Engine, warehouse: &Warehouse, token: Option<String>) -> Result<Self> {
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
            engine: Arc::new(engine),
            catalog_name,
            tables,
            token: token.filter(|t| !t.is_empty()),
            sql_info,
        })
    }

    fn check_token<T>(&self, request: &Request<T>) -> std::result::Result<(), Status> {
        let Some(token) = &self.token else { return Ok(()) };
        let sent = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if sent.strip_prefix("Bearer ") == Some(token.as_str()) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "this server needs `authorization: Bearer <token>` (the token of `ebroker serve --token`)",
            ))
        }
    }

    async fn plan(&self, sql: &str) -> std::result::Result<datafusion::prelude::DataFrame, Status> {
        self.engine
            .context()
            .sql(sql)
            .await
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    async fn execute(&self, sql: &str) -> std::result::Result<Response<DoGetStream>, Status> {
        let df = self.plan(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await.map_err(|e| Status::internal(e.to_string()))?;
        let batches = stream.map_err(|e| FlightError::ExternalError(Box::new(e)));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
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
        let sent = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let password_ok = sent
            .strip_prefix("Basic ")
            .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok())
            .and_then(|d| String::from_utf8(d).ok())
            .is_some_and(|userpass| userpass.split_once(':').is_some_and(|(_, p)| p == token));
        if !password_ok && sent.strip_prefix("Bearer ") != Some(token.as_str()) {
            return Err(Status::unauthenticated(
                "wrong credentials: use the token of `ebroker serve --token` as the password or bearer token",
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

/// Serves `service` on `address` until Ctrl-C or SIGTERM.
pub async fn serve(service: WarehouseFlightSql, address: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(Error::io(format!("tcp://{address}")))?;
    let local = listener.local_addr().map_err(Error::io(format!("tcp://{address}")))?;
    println!(
        "Flight SQL on grpc://{local}: {} tables ({})",
        service.tables.len(),
        if service.token.is_some() {
            "bearer token required"
        } else {
            "no authentication"
        }
    );
    let incoming = tokio_stream_from(listener);
    tonic::transport::Server::builder()
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
