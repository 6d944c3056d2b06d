//! The admin HTTP endpoint on the control executor (loopback by default): health, reload, stats.

use super::control::Control;
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
        (_, "/health" | "/reload" | "/config" | "/stats") => response(405, "text/plain", "method not allowed\n"),
        _ => response(404, "text/plain", "not found\n"),
    }
}

pub fn response(code: u16, ctype: &str, body: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
