//! The `ebroker` binary: parse arguments, set up logging, run the library, print the whole
//! error chain (credentials stripped from URLs) and exit with the error's code (2 usage, 3 bad input, 4 reconciliation, 1 other).

use ebroker::cli::{execute, parse, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() {
    ebroker::resources::limit_allocator_arenas();
    let (global, invocation) = parse();
    init_tracing(global.log_format, global.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    if let Err(error) = runtime.block_on(execute(global, invocation)) {
        eprintln!("error: {}", ebroker::secrets::redact_urls(&chain(&error)));
        std::process::exit(error.exit_code());
    }
}

fn init_tracing(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "ebroker=info,warn",
        1 => "ebroker=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// The error and every cause, joined with `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
