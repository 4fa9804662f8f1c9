//! `GET /metrics` of `ebroker serve`: the run history in Prometheus' text format
//! ([`crate::runner::metrics`]), read from the warehouse at each scrape, over plain HTTP/1.1
//! on `serve.metrics_port`. It answers one request per connection and nothing else: a request
//! head over 8 KiB or slower than 5 s is dropped, any other path is 404, and when Flight SQL
//! needs a bearer token so does /metrics (Prometheus sends it with `authorization`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{Error, Result};
use crate::runner::{history, metrics};
use crate::warehouse::Warehouse;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `address`; the endpoint then runs until the process ends.
pub async fn start(address: SocketAddr, warehouse: Warehouse, token: Option<String>) -> Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(Error::io(format!("tcp://{address} (serve.metrics_port)")))?;
    println!("Prometheus metrics on http://{address}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (warehouse, token) = (warehouse.clone(), token.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &warehouse, token.as_deref()).await {
                    tracing::debug!(error = %e, "a /metrics request ended early");
                }
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, warehouse: &Warehouse, token: Option<&str>) -> std::io::Result<()> {
    let Ok(head) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return Ok(());
    };
    let head = head?;
    let (status, body) = respond(&head, token, || async {
        match history::load(warehouse, None).await {
            Ok(days) => ("200 OK", metrics::exposition(&days)),
            Err(e) => ("500 Internal Server Error", format!("reading the run history: {e}\n")),
        }
    })
    .await;
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request head: bytes up to the blank line, at most [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The status and body for a request `head`; `exposition` is only asked for an authorized
/// `GET /metrics`.
async fn respond<F, Fut>(head: &str, token: Option<&str>, exposition: F) -> (&'static str, String)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = (&'static str, String)>,
{
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method != "GET" {
        return ("405 Method Not Allowed", "only GET /metrics\n".into());
    }
    if target.split('?').next() != Some("/metrics") {
        return ("404 Not Found", "only GET /metrics\n".into());
    }
    if let Some(token) = token {
        let sent = lines
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
            .and_then(|(_, value)| value.trim().strip_prefix("Bearer "))
            .unwrap_or_default();
        if !super::flight::same_token(sent.trim().as_bytes(), token.as_bytes()) {
            return (
                "401 Unauthorized",
                "send the serve token: authorization: Bearer <token>\n".into(),
            );
        }
    }
    exposition().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status(head: &str, token: Option<&str>) -> &'static str {
        respond(head, token, || async { ("200 OK", String::new()) }).await.0
    }

    #[tokio::test]
    async fn only_an_authorized_get_of_metrics_is_answered() {
        assert_eq!(status("GET /metrics HTTP/1.1\r\n\r\n", None).await, "200 OK");
        assert_eq!(status("GET /metrics?x=1 HTTP/1.1\r\n\r\n", None).await, "200 OK");
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n", None).await, "404 Not Found");
        assert_eq!(
            status("POST /metrics HTTP/1.1\r\n\r\n", None).await,
            "405 Method Not Allowed"
        );
        assert_eq!(status("", None).await, "405 Method Not Allowed");
        let with = |value: &str| format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {value}\r\n\r\n");
        assert_eq!(status(&with("Bearer s3cret"), Some("s3cret")).await, "200 OK");
        assert_eq!(status(&with("Bearer wrong"), Some("s3cret")).await, "401 Unauthorized");
        assert_eq!(
            status("GET /metrics HTTP/1.1\r\n\r\n", Some("s3cret")).await,
            "401 Unauthorized"
        );
    }
}
