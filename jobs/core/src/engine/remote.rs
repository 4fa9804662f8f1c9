//! Running on a Ballista cluster: the session configuration, runtime (object stores, memory
//! budget) and functions that the client, the scheduler and every executor install — one
//! definition, so a job plans and runs the same everywhere — and the client-side context.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::functions;
use super::memory::QueryMemoryPool;
use super::session::{apply_session_options, runtime_env, runtime_env_with_pool};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::warehouse::StoreRegistry;

/// Ballista's session configuration with ebroker's options, planned by Ballista's static
/// planner. Ballista 55's adaptive planner (its default) re-plans a left join whose other
/// side is empty forever: each re-plan removes the empty stage and adds a new one-task
/// exchange over it, so a day on which no client registered never finished its analytics
/// (tests/it/cluster.rs, `a_day_without_new_clients_completes_on_the_cluster`).
pub fn session_config(config: &Config) -> SessionConfig {
    let session = SessionConfig::new_with_ballista().with_ballista_adaptive_query_planner(false);
    apply_session_options(session, config)
}

/// The runtime a cluster node runs tasks in: ebroker's object stores and memory budget.
/// Ballista builds one per session it serves (per task without its session cache); all of
/// them draw on one pool of `engine.memory_limit` per process, so an executor stays within
/// its budget whatever number of jobs and sessions it runs at once — as in-process, where
/// every query shares the engine's one pool.
pub fn node_runtime(config: &Config) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    static NODE_POOL: OnceLock<Arc<dyn MemoryPool>> = OnceLock::new();
    let external = |e: Error| datafusion::error::DataFusionError::External(Box::new(e));
    let limit = config.memory_limit_bytes().map_err(external)?;
    let pool = NODE_POOL.get_or_init(|| Arc::new(QueryMemoryPool::new(limit)));
    runtime_env_with_pool(config, Arc::new(StoreRegistry::new()), Arc::clone(pool)).map_err(external)
}

/// The session state the scheduler plans with: default features, ebroker's runtime and
/// functions, for the session configuration the client sent.
pub fn scheduler_session(config: &Config, session: SessionConfig) -> datafusion::error::Result<SessionState> {
    let mut builder = SessionStateBuilder::new()
        .with_config(session)
        .with_runtime_env(node_runtime(config)?)
        .with_default_features();
    if let Some(scalars) = builder.scalar_functions() {
        scalars.extend(functions::all().into_iter().map(Arc::new));
    }
    Ok(builder.build())
}

/// The executors' function registry: Ballista's defaults plus ebroker's functions.
pub fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    let ours: HashMap<String, _> = functions::all()
        .into_iter()
        .map(|f| (f.name().to_string(), Arc::new(f)))
        .collect();
    registry.scalar_functions.extend(ours);
    registry
}

/// The gRPC address of the scheduler at `url` (`df://host[:port]`), as Ballista's client
/// derives it: `http://host:port`, port 50050 by default.
pub fn scheduler_address(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::Config(format!("cluster.url {url:?} is not a URL ({e}); use df://host:50050")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| Error::Config(format!("cluster.url {url:?} has no host; use df://host:50050")))?;
    Ok(format!("http://{host}:{}", parsed.port().unwrap_or(50050)))
}

/// A client context whose queries run on the scheduler at `config.cluster.url`.
pub async fn remote_context(config: &Config, registry: Arc<StoreRegistry>) -> Result<SessionContext> {
    let url = &config.cluster.url;
    let state = SessionStateBuilder::new()
        .with_config(session_config(config))
        .with_runtime_env(runtime_env(config, registry)?)
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(url, state)
        .await
        .map_err(|source| Error::Engine {
            context: format!(
                "connecting to the Ballista scheduler at {url} (is it running? `deploy/local/cluster.sh status`)"
            ),
            source,
        })?;
    // The remote context resets scalar functions from the state: register ours after.
    functions::register(&ctx);
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::MemoryConsumer;

    use super::*;

    #[test]
    fn every_runtime_of_a_node_draws_on_one_memory_budget() {
        let config = Config::load_from(None, &[], &[]).unwrap();
        let first = node_runtime(&config).unwrap();
        let second = node_runtime(&config).unwrap();
        let held = MemoryConsumer::new("a task of one session").register(&first.memory_pool);
        held.grow(3 << 20);
        assert_eq!(
            second.memory_pool.reserved(),
            3 << 20,
            "another session sees the first one's memory"
        );
    }
}
