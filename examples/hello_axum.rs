//! The baseline for the benchmarks: a minimal axum server built with the same profile as
//! runner-dispatch. `GET /` answers "ok"; `POST /echo` reads the body and answers 200.
//! Usage: `hello_axum <listen address>` (default 127.0.0.1:8081).

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};

async fn echo(body: Bytes) -> &'static str {
    std::hint::black_box(body.len());
    "ok"
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let app = Router::new().route("/", get(|| async { "ok" })).route("/echo", post(echo));
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}
