//! Plain HTTP/1.1 GETs of the operator's `/metrics`, `/healthz` and
//! `/readyz`: what a kubelet's probe or a Prometheus scrape reads.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` from `address` (host:port): (status line, body). An error
/// when nothing answers (the process is not listening yet, or is gone).
/// One request per connection, asking the server to close it after the
/// response (as a kubelet's probe does), so the response ends at EOF.
pub async fn get(address: &str, path: &str) -> Result<(String, String), String> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("sending to {address}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| format!("reading from {address}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

/// A sample's value in a Prometheus text exposition (0 when absent):
/// `sample` is the metric name with its labels, as exposed.
pub fn sample(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}
