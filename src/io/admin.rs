//! The admin HTTP endpoint on the control executor (loopback by default), and nutcracker's raw stats port.
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | `ok` |
//! | `GET /config` | the running config as TOML, secrets masked |
//! | `POST /reload` | reload the config file (the control plane's reload) |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /stats` | twemproxy's stats JSON |
//! | `GET /histograms` | percentiles per listener x command, pool and server (JSON, microseconds) |
//! | `POST /histograms/dump` | write the cumulative `.hgrm` files to `proxy.histogram_dir` now |
//!
//! One request per connection (`Connection: close`); request bodies are not read by any route.

use super::control::Control;
use super::metrics;
use super::stream::Conn;
use std::net::SocketAddr;
use std::rc::Rc;

pub fn start(control: Rc<Control>, addr: SocketAddr) {
    let listener = match glommio::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("admin endpoint: cannot listen on {addr}: {e}");
            return;
        }
    };
    log::info!("admin endpoint on http://{addr}");
    glommio::spawn_local(async move {
        loop {
            if let Ok(stream) = listener.accept().await {
                let c = control.clone();
                glommio::spawn_local(serve(c, Conn::tcp(stream))).detach();
            }
        }
    })
    .detach();
}

/// nutcracker's stats port: every connection gets the stats JSON, then the connection is closed.
pub fn start_stats_port(control: Rc<Control>, addr: SocketAddr) {
    let listener = match glommio::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("stats port: cannot listen on {addr}: {e}");
            return;
        }
    };
    log::info!("twemproxy-style stats on tcp://{addr}");
    glommio::spawn_local(async move {
        loop {
            if let Ok(stream) = listener.accept().await {
                let c = control.clone();
                glommio::spawn_local(async move {
                    let conn = Conn::tcp(stream);
                    let body = super::stats_json::twemproxy_json(&c).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                    conn.shutdown();
                })
                .detach();
            }
        }
    })
    .detach();
}

async fn serve(control: Rc<Control>, conn: Conn) {
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    // Read the request head (bodies are not used by any endpoint).
    let head_len = loop {
        match conn.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..have]) {
            Ok(httparse::Status::Complete(n)) => break n,
            Ok(httparse::Status::Partial) if have < buf.len() => continue,
            _ => {
                let _ = conn.write_all(&response(400, "text/plain", "bad request\n")).await;
                return;
            }
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(&buf[..head_len]);
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("/").split('?').next().unwrap_or("/").to_string();
    let resp = route(&control, &method, &path).await;
    let _ = conn.write_all(&resp).await;
    conn.shutdown();
}

/// Every route and the one method it answers.
const ROUTES: [(&str, &str); 7] = [
    ("GET", "/health"),
    ("GET", "/config"),
    ("POST", "/reload"),
    ("GET", "/metrics"),
    ("GET", "/stats"),
    ("GET", "/histograms"),
    ("POST", "/histograms/dump"),
];

async fn route(control: &Rc<Control>, method: &str, path: &str) -> Vec<u8> {
    match (method, path) {
        ("GET", "/health") => response(200, "text/plain", "ok\n"),
        ("POST", "/reload") => match control.reload("POST /reload").await {
            Ok(()) => response(200, "text/plain", "reloaded\n"),
            Err(e) => response(400, "text/plain", &format!("reload rejected: {e}\n")),
        },
        ("GET", "/config") => response(200, "application/toml", &control.config.borrow().to_redacted_toml()),
        ("GET", "/stats") => {
            let body = super::stats_json::twemproxy_json(control).await;
            response(200, "application/json", &body)
        }
        ("GET", "/metrics") => {
            let stats = metrics::collect(control).await;
            let body = crate::stats::render_prometheus(&stats, &metrics::process_info(control));
            response(200, crate::stats::PROMETHEUS_CONTENT_TYPE, &body)
        }
        ("GET", "/histograms") => {
            let stats = metrics::collect(control).await;
            response(200, "application/json", &crate::stats::render_histograms(&stats))
        }
        ("POST", "/histograms/dump") => match metrics::dump_now(control).await {
            Ok(files) => {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                let body = serde_json::json!({ "written": names }).to_string() + "\n";
                response(200, "application/json", &body)
            }
            Err(e) => response(409, "text/plain", &format!("no dump: {e}\n")),
        },
        (_, p) if ROUTES.iter().any(|(_, known)| *known == p) => response(405, "text/plain", "method not allowed\n"),
        _ => response(404, "text/plain", "not found\n"),
    }
}

pub fn response(code: u16, ctype: &str, body: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
