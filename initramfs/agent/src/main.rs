//! vireo-agent: the node agent, started and kept alive by vireo-init.

use std::net::SocketAddr;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(name = "vireo-agent", version, about = "Vireo node agent (REST API)")]
struct Args {
    /// Address and port of the REST API.
    #[arg(long, default_value = "0.0.0.0:8006")]
    listen: SocketAddr,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vireo-agent: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().map_or(args.listen, |a| a);
    eprintln!("vireo-agent: listening on http://{addr}");
    if let Err(e) = vireo_agent::server::serve(listener, stop_signal()).await {
        eprintln!("vireo-agent: {e}");
        std::process::exit(2);
    }
    eprintln!("vireo-agent: stopped");
}

/// SIGTERM (init's shutdown) or SIGINT (a terminal's Ctrl-C).
async fn stop_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
