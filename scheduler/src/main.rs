//! `ebroker-scheduler`: Ballista's scheduler with ebroker's session configuration,
//! object stores (file, hdfs, s3), SQL functions and plan codec (ebroker-plans) installed, so jobs submitted by
//! `ebroker --cluster df://host:port` plan here exactly as they do in-process.
//!
//! Every upstream flag is kept (`--help`); ebroker's own settings (memory budget, spill
//! directory) come from `ebroker.toml` / `EBROKER_*` like the CLI's. SIGTERM and Ctrl-C stop
//! it gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{Config as SchedulerArgs, SchedulerConfig};
use ballista_scheduler::scheduler_process::start_server;
use clap::Parser;
use ebroker_core::config::Config;
use tracing_subscriber::EnvFilter;

fn main() {
    let args = SchedulerArgs::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(args.log_level_setting.clone()));
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 << 20)
        .build()
        .expect("tokio runtime starts");
    if let Err(message) = runtime.block_on(serve(args)) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

async fn serve(args: SchedulerArgs) -> Result<(), String> {
    let ebroker = Config::load(None, &[]).map_err(|e| e.to_string())?;
    let addr: SocketAddr = format!("{}:{}", args.bind_host, args.bind_port)
        .parse()
        .map_err(|e| format!("--bind-host/--bind-port do not form an address: {e}"))?;
    let config: SchedulerConfig = args.try_into().map_err(|e| format!("{e}"))?;
    let for_config = ebroker.clone();
    let mut config = config
        .with_override_config_producer(Arc::new(move || {
            ebroker_core::engine::remote::session_config(&for_config)
        }))
        .with_override_session_builder(Arc::new(move |session| {
            ebroker_core::engine::remote::scheduler_session(&ebroker, session)
        }));
    // Decodes the plans of ebroker's own work (Kafka range dumps) and encodes their tasks.
    config.override_physical_codec = Some(ebroker_plans::codec::codec());
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| format!("{e}"))?;
    tokio::select! {
        result = start_server(cluster, addr, Arc::new(config)) => result.map_err(|e| format!("{e}")),
        _ = shutdown_signal() => {
            tracing::info!("scheduler received a shutdown signal; stopping");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
