//! `ebroker-executor`: Ballista's executor with ebroker's session configuration, object
//! stores (file, hdfs, s3), memory budget, SQL functions and plan codec (ebroker-plans) installed, so tasks of ebroker's
//! jobs run here exactly as they do in-process.
//!
//! Every upstream flag is kept (`--help`), including `--bind-health-port` (served by this
//! binary); ebroker's own settings come from `ebroker.toml` / `EBROKER_*`. SIGTERM and
//! Ctrl-C drain and stop it (handled by Ballista's executor process).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_executor::config::Config as ExecutorArgs;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_executor::health::spawn_health_server;
use clap::Parser;
use ebroker_core::config::Config;
use tracing_subscriber::EnvFilter;

fn main() {
    ebroker_core::resources::limit_allocator_arenas();
    let args = ExecutorArgs::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    if let Err(message) = runtime.block_on(serve(args)) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

async fn serve(args: ExecutorArgs) -> Result<(), String> {
    let ebroker = Config::load(None, &[]).map_err(|e| e.to_string())?;
    // Secret Kafka properties come from this node's configuration, never from a plan.
    ebroker_plans::kafka::set_node_secrets(&ebroker.kafka);
    let health_addr: SocketAddr = format!("{}:{}", args.bind_host, args.bind_health_port)
        .parse()
        .map_err(|e| format!("--bind-host/--bind-health-port do not form an address: {e}"))?;
    let mut config: ExecutorProcessConfig = args.try_into().map_err(|e| format!("{e}"))?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.special_mod_log_level.clone()));
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
    let for_config = ebroker.clone();
    config.override_config_producer = Some(Arc::new(move || {
        ebroker_core::engine::remote::session_config(&for_config)
    }));
    config.override_runtime_producer = Some(Arc::new(move |_| ebroker_core::engine::remote::node_runtime(&ebroker)));
    config.override_function_registry = Some(Arc::new(ebroker_core::engine::remote::function_registry()));
    // Runs ebroker's own work (Kafka range dumps).
    config.override_physical_codec = Some(ebroker_plans::codec::codec());

    let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
    let health = spawn_health_server(health_addr, config.health.clone(), health_stopped);
    let result = start_executor_process(Arc::new(config)).await;
    let _ = stop_health.send(());
    let _ = health.await;
    result.map_err(|e| format!("{e}"))
}
