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
//! One request per connection (`Connection: close`); request bodies are not read by any route. The mutating routes
//! (`POST`) refuse cross-site browser requests and need `proxy.admin_token` when it is set (see `admin_access`).
//! Both endpoints serve at most `proxy.admin_max_connections` connections at once, each bounded by
//! `proxy.admin_timeout_ms` for reading its request and for writing the answer.

use super::admin_access::{self, Refusal};
use super::control::{Control, ReloadError};
use super::exhaustion::{self, AcceptBackoff, Throttle, WARN_INTERVAL};
use super::metrics;
use super::stream::Conn;
use glommio::net::TcpStream;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Binds the admin endpoint or the stats port (`what`, for messages), on the main thread before any executor
/// starts, so that an address in use ends start-up with a message naming it. With SO_REUSEADDR, as the data
/// listeners: the previous process's connections left in TIME_WAIT (after any scrape) must not keep a restart from
/// binding. Without SO_REUSEPORT: a second ferrule on the same port must fail, not share it.
///
/// A port still held by the listener of a ferrule that just exited (its io_uring, torn down by the kernel after the
/// process is gone, keeps the socket listening for some milliseconds) is waited for, up to [`BIND_RETRY`].
pub fn bind(what: &str, addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let deadline = Instant::now() + BIND_RETRY;
    loop {
        match bind_once(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result.map_err(|e| format!("{what}: cannot listen on {addr}: {e}")),
        }
    }
}

/// How long start-up waits for an admin or stats address in use to become free before it fails.
const BIND_RETRY: Duration = Duration::from_secs(1);

fn bind_once(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(std::net::TcpListener::from(sock))
}

/// Takes a listening socket [`start`] or [`start_stats_port`] serves out of LISTEN at once (at shutdown), so that
/// the next ferrule can bind the address as soon as this one is gone.
pub fn stop_listening(fd: RawFd) {
    // SAFETY: the descriptor stays open (owned by the accept loop) until the executor ends; shutdown does not close it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// The admin endpoint on the control executor, on the socket [`bind`] made; returns its descriptor.
pub fn start(control: Rc<Control>, listener: std::net::TcpListener) -> RawFd {
    let addr = listener.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    log::info!("admin endpoint on http://{addr}");
    let fd = listener.as_raw_fd();
    glommio::spawn_local(accept_loop(control, listener, "admin endpoint", true, serve)).detach();
    fd
}

/// nutcracker's stats port: every connection gets the stats JSON, then the connection is closed. Returns the
/// listening descriptor.
pub fn start_stats_port(control: Rc<Control>, listener: std::net::TcpListener) -> RawFd {
    let addr = listener.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    log::info!("twemproxy-style stats on tcp://{addr}");
    let fd = listener.as_raw_fd();
    glommio::spawn_local(accept_loop(control, listener, "stats port", false, serve_stats)).detach();
    fd
}

/// The longest an idle endpoint waits before it looks for a connection again: the most an admin request waits to
/// be accepted.
const ACCEPT_POLL_MAX: Duration = Duration::from_millis(20);

/// Bounds a blocking accept on `fd` to 1 ms (SO_RCVTIMEO): [`try_accept`] accepts only after poll(2) said a
/// connection waits, but the other process of a binary upgrade, serving the same socket, may take it in between.
/// Not O_NONBLOCK: that flag belongs to the open file, which the two processes share.
fn bound_accept_wait(fd: RawFd) -> std::io::Result<()> {
    let tv = libc::timeval { tv_sec: 0, tv_usec: 1000 };
    // SAFETY: setsockopt on our listening descriptor with a valid timeval.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A connection waiting on the listening socket `fd`, if any, without waiting. Readiness, then accept: unlike an
/// accept armed in io_uring (glommio's), nothing is left in the kernel that could take a connection after the loop
/// stops (at a hand-over the successor serves the same socket; a cancelled accept can complete with a connection
/// nobody serves, and one still armed when the process exits outlives it until the kernel tears the ring down).
fn try_accept(fd: RawFd) -> Option<std::io::Result<TcpStream>> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, no wait.
    if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 || pfd.revents & libc::POLLIN == 0 {
        return None;
    }
    // SAFETY: accept4 on our listening descriptor; the result is a new descriptor we own.
    let conn = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    if conn < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            // Taken by the other process of an upgrade, or gone before we took it.
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => None,
            _ => Some(Err(e)),
        };
    }
    // SAFETY: just accepted, owned by nobody else. Blocking, as glommio's own accept leaves it (its io_uring
    // operations do not wait on an O_NONBLOCK socket).
    Some(Ok(unsafe { TcpStream::from_raw_fd(conn) }))
}

/// Stops the endpoints' accept loops for good (after a hand-over, see `control::run`).
#[derive(Default)]
pub struct EndpointStop {
    stopped: Cell<bool>,
    wakers: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl EndpointStop {
    pub fn stop(&self) {
        self.stopped.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    async fn stopped(&self) {
        std::future::poll_fn(|cx| {
            if self.stopped.get() {
                return std::task::Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Counts a connection as open until dropped.
struct Open(Rc<Cell<usize>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Accepts connections (see [`try_accept`]) and serves each in its own task, at most
/// `proxy.admin_max_connections` at once (more get a 503 after their request is read when the endpoint speaks `http`, and are closed).
/// Out of descriptors, the loop pauses (10 ms doubling to 100 ms) instead of retrying at once, which would keep
/// control's other tasks (signals, probes, reloads) from running. Ends when `Control::endpoints_stop` is stopped.
async fn accept_loop<F, Fut>(
    control: Rc<Control>,
    listener: std::net::TcpListener,
    what: &'static str,
    http: bool,
    serve: F,
) where
    F: Fn(Rc<Control>, TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let open = Rc::new(Cell::new(0usize));
    // Connections over the bound being refused (their request read, then a 503): bounded the same, beyond that
    // they are closed at once.
    let refusing = Rc::new(Cell::new(0usize));
    let mut backoff = AcceptBackoff::default();
    let fd_warn = Throttle::new(WARN_INTERVAL);
    let full_warn = Throttle::new(WARN_INTERVAL);
    let fd = listener.as_raw_fd();
    if let Err(e) = bound_accept_wait(fd) {
        log::warn!("{what}: cannot bound its accept's wait: {e}");
    }
    let mut idle = Duration::ZERO;
    loop {
        let accepted = match try_accept(fd) {
            Some(accepted) => {
                idle = Duration::ZERO;
                accepted
            }
            None => {
                // Nothing waiting: look again a little later (1 ms, doubling to ACCEPT_POLL_MAX while idle), unless
                // stopped meanwhile. No accept is ever armed in the kernel, so stopping loses no connection.
                idle = (idle * 2).clamp(Duration::from_millis(1), ACCEPT_POLL_MAX);
                let stopped = futures_lite::future::or(
                    async {
                        glommio::timer::sleep(idle).await;
                        false
                    },
                    async {
                        control.endpoints_stop.stopped().await;
                        true
                    },
                )
                .await;
                if stopped {
                    log::info!("{what}: stopped accepting (the new process serves it)");
                    return;
                }
                continue;
            }
        };
        match accepted {
            Ok(stream) => {
                backoff.succeeded();
                let max = control.config().proxy.admin_max_connections;
                if open.get() >= max {
                    if let Some(held_back) = full_warn.allow(Instant::now()) {
                        log::warn!(
                            "{what}: {max} connections open (proxy.admin_max_connections); closing new ones{}",
                            exhaustion::suppressed_note(held_back)
                        );
                    }
                    if http && refusing.get() < max {
                        refusing.set(refusing.get() + 1);
                        let guard = Open(refusing.clone());
                        let work = refuse_busy(control.clone(), stream);
                        glommio::spawn_local(async move {
                            let _refusing = guard;
                            work.await;
                        })
                        .detach();
                    } else if http {
                        refuse_busy_now(&stream);
                    }
                } else {
                    open.set(open.get() + 1);
                    let guard = Open(open.clone());
                    let work = serve(control.clone(), stream);
                    glommio::spawn_local(async move {
                        let _open = guard;
                        work.await;
                    })
                    .detach();
                }
                // A flood of connections is accepted without waiting: let the other tasks run now and then.
                glommio::yield_if_needed().await;
            }
            Err(e) => {
                if exhaustion::is_out_of_descriptors(&e) {
                    if let Some(held_back) = fd_warn.allow(Instant::now()) {
                        log::warn!(
                            "{what}: accept failed: {e} ({}); new connections wait until descriptors are free{}",
                            exhaustion::errno_name(&e),
                            exhaustion::suppressed_note(held_back)
                        );
                    }
                    glommio::timer::sleep(backoff.failed()).await;
                } else {
                    // A connection that failed before it was taken (reset, aborted): the next one is fine. Still
                    // yield, so that no error, however persistent, can hold the executor.
                    log::debug!("{what}: accept: {e}");
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

/// How long a connection over the bound may take to send its request before it gets the 503 anyway.
const REFUSE_READ_TIMEOUT: Duration = Duration::from_secs(1);

fn busy_reply() -> Vec<u8> {
    response(503, "text/plain", "too many admin connections (proxy.admin_max_connections); retry later\n")
}

/// Reads the request (bounded in size and time), then answers 503 and closes. Closing with the request unread would
/// make the kernel answer the client's data with a reset, which discards the 503 before the client reads it.
async fn refuse_busy(control: Rc<Control>, stream: TcpStream) {
    let conn = Conn::tcp(stream);
    let mut buf = vec![0u8; 8192];
    let limit = Duration::from_millis(control.config().proxy.admin_timeout_ms).min(REFUSE_READ_TIMEOUT);
    let read = glommio::timer::timeout(limit, async { Ok(read_head(&conn, &mut buf).await) }).await;
    if !matches!(read, Ok(None)) {
        // A head read in time, or none within the limit (then the 503 still says why); `Ok(None)`: the client went
        // away or sent garbage and was answered 400.
        bounded(&control, async { conn.write_all(&busy_reply()).await.ok() }).await;
    }
    conn.shutdown();
}

/// Best effort, without waiting, when even the refusals are over the bound: a 503 that says why, then the
/// connection closes (dropping the stream).
fn refuse_busy_now(stream: &TcpStream) {
    let reply = busy_reply();
    // SAFETY: a plain non-blocking send on the descriptor `stream` owns, from a buffer that outlives the call.
    unsafe {
        libc::send(stream.as_raw_fd(), reply.as_ptr().cast(), reply.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    }
}

/// The `proxy.admin_timeout_ms` bound on one phase of a connection (reading the request, writing the answer).
async fn bounded<T>(control: &Control, phase: impl Future<Output = Option<T>>) -> Option<T> {
    let limit = Duration::from_millis(control.config().proxy.admin_timeout_ms);
    glommio::timer::timeout(limit, async { Ok(phase.await) }).await.ok().flatten()
}

async fn serve_stats(control: Rc<Control>, stream: TcpStream) {
    let conn = Conn::tcp(stream);
    let body = super::stats_json::twemproxy_json(&control).await;
    bounded(&control, async { conn.write_all(body.as_bytes()).await.ok() }).await;
    conn.shutdown();
}

/// Reads the request head (bodies are not used by any endpoint) into `buf`; its length, or `None` when the client
/// went away, sent too much, or (with a 400 sent) sent garbage.
async fn read_head(conn: &Conn, buf: &mut [u8]) -> Option<usize> {
    let mut have = 0;
    loop {
        match conn.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => have += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..have]) {
            Ok(httparse::Status::Complete(n)) => return Some(n),
            Ok(httparse::Status::Partial) if have < buf.len() => continue,
            _ => {
                let _ = conn.write_all(&response(400, "text/plain", "bad request\n")).await;
                return None;
            }
        }
    }
}

async fn serve(control: Rc<Control>, stream: TcpStream) {
    let conn = Conn::tcp(stream);
    let mut buf = vec![0u8; 8192];
    // A client that connects and sends nothing (or drips) is closed after proxy.admin_timeout_ms.
    let Some(head_len) = bounded(&control, read_head(&conn, &mut buf)).await else {
        conn.shutdown();
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(&buf[..head_len]);
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("/").split('?').next().unwrap_or("/").to_string();
    let header = |name: &str| {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let access = admin_access::Headers {
        host: header("host"),
        origin: header("origin"),
        sec_fetch_site: header("sec-fetch-site"),
        authorization: header("authorization"),
    };
    let resp = if MUTATING.contains(&(method.as_str(), path.as_str())) {
        let token = control.config().proxy.admin_token.clone();
        match admin_access::check_mutating(&access, token.as_deref()) {
            Ok(()) => route(&control, &method, &path).await,
            Err(refusal) => refused(&method, &path, refusal),
        }
    } else {
        route(&control, &method, &path).await
    };
    bounded(&control, async { conn.write_all(&resp).await.ok() }).await;
    conn.shutdown();
}

/// The routes that change something: a browser page of another site may not call them, and they need
/// `proxy.admin_token` when it is set.
const MUTATING: [(&str, &str); 2] = [("POST", "/reload"), ("POST", "/histograms/dump")];

fn refused(method: &str, path: &str, refusal: Refusal) -> Vec<u8> {
    match refusal {
        Refusal::Forbidden(why) => {
            log::warn!("admin endpoint: {method} {path} refused: {why}");
            response(403, "text/plain", &format!("{why}\n"))
        }
        Refusal::Unauthorized(why) => {
            log::warn!("admin endpoint: {method} {path} refused: {why}");
            response_with(
                401,
                "text/plain",
                "WWW-Authenticate: Bearer realm=\"ferrule admin\"\r\n",
                &format!("{why}\n"),
            )
        }
    }
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
            // Not a client error: the file was good, a worker did not say it applied it. Retrying is safe.
            Err(ReloadError::Unconfirmed(e)) => response(503, "text/plain", &format!("reload not confirmed: {e}\n")),
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
    response_with(code, ctype, "", body)
}

/// A response with `extra` header lines (each ending in CRLF).
fn response_with(code: u16, ctype: &str, extra: &str, body: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
