//! Binary upgrade without a refused connection: the running ferrule hands its listening sockets (every worker's
//! SO_REUSEPORT socket of every client listener, the admin endpoint, the stats port and the upgrade socket itself)
//! to its successor over the unix socket `proxy.upgrade_socket`, by SCM_RIGHTS; the successor serves on them at
//! once and says so; then the running one stops accepting and drains (see `worker::hand_over`). The messages are
//! `crate::handover`'s. The sockets themselves are passed, not re-bound: connections waiting in an old socket's
//! accept queue are accepted by the successor instead of being reset when the old process lets go of it.
//!
//! Descriptors go with `libc`'s sendmsg/recvmsg (already a dependency for the rest of `io`; the cmsg handling is a
//! few lines, not worth another crate), one descriptor per SOCK_SEQPACKET message.
//!
//! Nothing here runs on the request path: the server side is a thread of its own, blocking on the upgrade socket;
//! the registry of listening sockets is touched when a listener is bound or closed.

use crate::handover::{self, Entry, Kind};
use std::collections::HashMap;
use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long either side waits for the other's next message.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the running process waits for its successor to start serving (workers start within 10 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest message of the exchange (a socket description: a unix path is at most 108 bytes).
const MAX_MESSAGE: usize = 4096;

/// A listening socket this process serves, as it would be handed over: a duplicate of the worker's descriptor,
/// so the hand-over thread never sends a descriptor a worker closed (and the system reused) meanwhile.
struct Registered {
    id: u64,
    entry: Entry,
    fd: OwnedFd,
}

/// Every listening socket of the process. Process-wide (the workers register their sockets, the hand-over thread
/// reads them): a lock taken when a listener is bound or closed and once per upgrade, never per request.
static REGISTRY: Mutex<(u64, Vec<Registered>)> = Mutex::new((0, Vec::new()));

/// Records a listening socket for a future hand-over; returns the id to [`unregister`] it with.
pub fn register(kind: Kind, worker: usize, addr: String, fd: BorrowedFd<'_>) -> io::Result<u64> {
    let fd = fd.try_clone_to_owned()?;
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.0 += 1;
    let id = registry.0;
    registry.1.push(Registered { id, entry: Entry { kind, worker, addr }, fd });
    Ok(id)
}

/// Forgets a socket that is no longer served (its listener was closed).
pub fn unregister(id: u64) {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.1.retain(|r| r.id != id);
}

/// Set by a successor until every worker serves: its accept loops wait, so that a successor that fails to start
/// (a listener that cannot bind on one worker, say) exits without having taken a single connection from the queues
/// the running process still serves.
static ACCEPTS_HELD: AtomicBool = AtomicBool::new(false);

/// Holds every accept loop until [`release_accepts`] (a successor, before its workers start).
pub fn hold_accepts() {
    ACCEPTS_HELD.store(true, Ordering::Relaxed);
}

pub fn release_accepts() {
    ACCEPTS_HELD.store(false, Ordering::Relaxed);
}

/// Whether accept loops must wait (asked once when an accept loop starts, never per connection).
pub fn accepts_held() -> bool {
    ACCEPTS_HELD.load(Ordering::Relaxed)
}

/// Set while this process passes its listening sockets to a successor, and for good once the successor serves
/// them: the sockets are shared from the first one sent, and a reload that closed or replaced a listener here
/// would close it for the successor too (a listening socket is one object in the kernel, however many processes
/// hold it). Reloads are refused meanwhile ([`begin_reload`]). Cleared if the successor fails.
static HANDING_OVER: AtomicBool = AtomicBool::new(false);
/// Set while a reload applies a config in this process: the hand-over waits for it before it sends a socket.
static RELOADING: AtomicBool = AtomicBool::new(false);
/// Set in a successor until its predecessor confirmed it stops accepting (or the exchange failed): reloads wait.
static TAKING_OVER: AtomicBool = AtomicBool::new(false);

/// Why a reload cannot run now.
pub enum ReloadBlocked {
    /// This process is handing its sockets over, or has: the successor must be reloaded instead.
    HandingOver,
    /// This process is taking over and its predecessor has not confirmed yet: retry shortly.
    TakingOver,
}

/// Asks to apply a reload; the returned guard is held while it applies. Refused while this process hands its
/// sockets over (or after it did), or while it takes over. The two flags are SeqCst: of a reload and a hand-over
/// that start at once, at least one sees the other (the reload is refused, or the hand-over waits for it).
pub fn begin_reload() -> Result<ReloadGuard, ReloadBlocked> {
    if TAKING_OVER.load(Ordering::SeqCst) {
        return Err(ReloadBlocked::TakingOver);
    }
    RELOADING.store(true, Ordering::SeqCst);
    if HANDING_OVER.load(Ordering::SeqCst) {
        RELOADING.store(false, Ordering::SeqCst);
        return Err(ReloadBlocked::HandingOver);
    }
    Ok(ReloadGuard(()))
}

/// Held while a reload applies (see [`begin_reload`]).
pub struct ReloadGuard(());

impl Drop for ReloadGuard {
    fn drop(&mut self) {
        RELOADING.store(false, Ordering::SeqCst);
    }
}

/// The takeover's exchange has ended (confirmed or failed): reloads run again.
pub fn finish_taking_over() {
    TAKING_OVER.store(false, Ordering::SeqCst);
}

/// A worker's share of the passed client listener sockets, by address (`ListenAddr`'s `Display`).
pub type WorkerSockets = HashMap<String, Vec<OwnedFd>>;

/// What the successor received from the process it takes over from, and the connection to it.
pub struct Inherited {
    sockets: Vec<(Entry, OwnedFd)>,
    conn: OwnedFd,
}

impl Inherited {
    /// The passed socket of `kind` at `addr`, if any (the admin endpoint, stats port, upgrade socket).
    pub fn take(&mut self, kind: Kind, addr: &str) -> Option<OwnedFd> {
        let i = self.sockets.iter().position(|(e, _)| e.kind == kind && e.addr == addr)?;
        Some(self.sockets.swap_remove(i).1)
    }

    /// Splits the passed client listener sockets over `workers` new workers (`handover::share`); leaves the
    /// others (admin, stats, upgrade) here.
    pub fn split_listeners(&mut self, workers: usize) -> Vec<WorkerSockets> {
        let mut by_addr: HashMap<String, Vec<(usize, OwnedFd)>> = HashMap::new();
        let mut rest = Vec::new();
        for (entry, fd) in self.sockets.drain(..) {
            match entry.kind {
                Kind::Listener => by_addr.entry(entry.addr).or_default().push((entry.worker, fd)),
                _ => rest.push((entry, fd)),
            }
        }
        self.sockets = rest;
        let mut shares: Vec<WorkerSockets> = (0..workers).map(|_| WorkerSockets::new()).collect();
        for (addr, mut fds) in by_addr {
            fds.sort_by_key(|(worker, _)| *worker);
            let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(|(_, fd)| Some(fd)).collect();
            let passed = fds.len();
            for (w, share) in shares.iter_mut().enumerate() {
                let mine: Vec<OwnedFd> =
                    handover::share(w, workers, passed).into_iter().filter_map(|j| fds[j].take()).collect();
                if !mine.is_empty() {
                    share.insert(addr.clone(), mine);
                }
            }
        }
        shares
    }

    /// Tells the previous process that every worker serves, and waits until it confirms that it stops accepting.
    /// Sockets passed but not taken (their address left the config) are closed here.
    pub fn confirm_ready(self) -> Result<(), String> {
        for (entry, _) in &self.sockets {
            log::info!("takeover: the passed socket `{}` is not in the config any more: closed", entry.encode());
        }
        send(self.conn.as_raw_fd(), &handover::ready_message(std::process::id()), None)
            .map_err(|e| format!("cannot tell the previous process that this one serves: {e}"))?;
        match recv(self.conn.as_raw_fd()) {
            Ok((text, _)) if text == handover::ACK => Ok(()),
            Ok((text, _)) => Err(format!("the previous process answered {text:?} instead of {:?}", handover::ACK)),
            Err(e) => Err(format!("no answer from the previous process: {e}")),
        }
    }
}

/// The successor's side: connects to the running ferrule's upgrade socket and receives its listening sockets.
pub fn receive(path: &Path) -> Result<Inherited, String> {
    TAKING_OVER.store(true, Ordering::SeqCst);
    let fail = |e: io::Error| format!("--takeover: {}: {e}", path.display());
    let conn = connect(path).map_err(|e| {
        format!(
            "--takeover: cannot reach a running ferrule on proxy.upgrade_socket {}: {e} (is one running with this \
             upgrade_socket?)",
            path.display()
        )
    })?;
    send(conn.as_raw_fd(), handover::HELLO, None).map_err(fail)?;
    let mut sockets = Vec::new();
    loop {
        let (text, fd) = recv(conn.as_raw_fd()).map_err(fail)?;
        if let Some(count) = handover::parse_end(&text) {
            if count != sockets.len() {
                return Err(format!("--takeover: announced {count} sockets but {} arrived", sockets.len()));
            }
            break;
        }
        let entry = Entry::decode(&text)?;
        let fd = fd.ok_or_else(|| format!("--takeover: no descriptor came with {text:?}"))?;
        sockets.push((entry, fd));
    }
    log::info!("takeover: received {} listening sockets from the running ferrule on {}", sockets.len(), path.display());
    Ok(Inherited { sockets, conn })
}

/// Binds the upgrade socket, after making sure no ferrule still serves it (a stale file from a process that
/// died is removed).
pub fn bind(path: &Path) -> Result<OwnedFd, String> {
    if path.exists() {
        if connect(path).is_ok() {
            return Err(format!(
                "proxy.upgrade_socket {}: another ferrule serves it; start this one with --takeover to take over \
                 from it, or stop that one first",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    seqpacket_listener(path).map_err(|e| format!("proxy.upgrade_socket: cannot listen on {}: {e}", path.display()))
}

/// Serves the upgrade socket in a thread of its own: one successor at a time; when one confirms it serves, sets
/// `handed_over` (control then drains this process) and ends. A successor that fails or goes away before it is
/// ready changes nothing.
pub fn serve(listener: OwnedFd, path: PathBuf, handed_over: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new().name("ferrule-upgrade".into()).spawn(move || loop {
        // SAFETY: accept on our listening descriptor; the result is a new descriptor we own.
        let fd = unsafe {
            libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("upgrade socket {}: accept failed: {e}", path.display());
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        // SAFETY: just accepted, owned by nobody else.
        let conn = unsafe { OwnedFd::from_raw_fd(fd) };
        match hand_over(&conn, &listener, &path) {
            Ok(pid) => {
                log::info!("takeover: process {pid} serves the listening sockets now; this one stops accepting");
                handed_over.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                HANDING_OVER.store(false, Ordering::SeqCst);
                log::error!("takeover aborted, this process keeps serving: {e}");
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot start the upgrade socket's thread: {e}");
    }
}

/// The running process's side of one exchange; returns the successor's pid once it serves.
fn hand_over(conn: &OwnedFd, listener: &OwnedFd, path: &Path) -> Result<u32, String> {
    let fd = conn.as_raw_fd();
    set_timeout(fd, EXCHANGE_TIMEOUT).map_err(|e| e.to_string())?;
    let (hello, _) = recv(fd).map_err(|e| format!("no request from the successor: {e}"))?;
    if hello != handover::HELLO {
        return Err(format!("the successor sent {hello:?}, not {:?} (a different ferrule version?)", handover::HELLO));
    }
    // From the first socket sent, a reload here could close one the successor serves: none starts now, and one
    // that is applying finishes first (within half the successor's patience: it waits for the first socket).
    HANDING_OVER.store(true, Ordering::SeqCst);
    let waited = std::time::Instant::now();
    while RELOADING.load(Ordering::SeqCst) {
        if waited.elapsed() > EXCHANGE_TIMEOUT / 2 {
            return Err("a reload of this process did not finish".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = {
        let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        for r in &registry.1 {
            send(fd, &r.entry.encode(), Some(r.fd.as_raw_fd())).map_err(|e| format!("sending sockets: {e}"))?;
        }
        registry.1.len()
    };
    let upgrade = Entry { kind: Kind::Upgrade, worker: 0, addr: path.display().to_string() };
    send(fd, &upgrade.encode(), Some(listener.as_raw_fd())).map_err(|e| format!("sending sockets: {e}"))?;
    send(fd, &handover::end_message(sent + 1), None).map_err(|e| format!("sending sockets: {e}"))?;
    log::info!("takeover: passed {} listening sockets to a new process; waiting until it serves", sent + 1);
    set_timeout(fd, READY_TIMEOUT).map_err(|e| e.to_string())?;
    let (ready, _) = recv(fd).map_err(|e| format!("the new process did not start serving: {e}"))?;
    let pid = handover::parse_ready(&ready).ok_or_else(|| format!("the new process said {ready:?}"))?;
    send(fd, handover::ACK, None).map_err(|e| format!("answering the new process: {e}"))?;
    Ok(pid)
}

/// This executable as it was at start-up (a package upgrade replaces the file: SIGUSR2 starts the new one).
static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Remembers the path of the running executable; called at start-up, before anything could replace the file.
pub fn remember_exe() {
    EXE.get_or_init(|| std::env::current_exe().ok());
}

/// SIGUSR2: starts the binary at this executable's path with this process's arguments and `--takeover`. The new
/// process takes the sockets over by itself; if it fails, it exits, and this process keeps serving.
pub fn spawn_successor(upgrade_socket: Option<&Path>) {
    if upgrade_socket.is_none() {
        log::error!("SIGUSR2: a binary upgrade needs proxy.upgrade_socket (set it, then restart once); ignored");
        return;
    }
    let Some(Some(exe)) = EXE.get() else {
        log::error!("SIGUSR2: the path of this executable is unknown; start the new one with --takeover instead");
        return;
    };
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !args.iter().any(|a| a == "--takeover") {
        args.push("--takeover".into());
    }
    match std::process::Command::new(exe).args(&args).stdin(std::process::Stdio::null()).spawn() {
        Ok(mut child) => {
            let pid = child.id();
            log::info!("SIGUSR2: started {} (process {pid}) to take over", exe.display());
            // Reaps it if it fails; once it serves, this process exits and it runs on.
            let _ = std::thread::Builder::new().name("ferrule-successor".into()).spawn(move || {
                if let Ok(status) = child.wait() {
                    log::error!("upgrade: the new process {pid} exited ({status}); this process keeps serving");
                }
            });
        }
        Err(e) => log::error!("SIGUSR2: cannot start {}: {e}; this process keeps serving", exe.display()),
    }
}

/// Tells systemd (Type=notify) that this process is ready, and that it is the service's main process now (after a
/// takeover its predecessor, systemd's main process until then, exits). Nothing without `NOTIFY_SOCKET`.
pub fn notify_ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    let sent = (|| -> io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = socket.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(message.as_bytes(), &addr)?;
        } else {
            sock.send_to(message.as_bytes(), Path::new(&socket))?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        log::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain socket(2) call; the result is a new descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unix_addr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the path is too long for a unix socket"));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn connect(path: &Path) -> io::Result<OwnedFd> {
    let sock = seqpacket_socket()?;
    let (addr, len) = unix_addr(path)?;
    // SAFETY: a valid sockaddr_un of `len` bytes.
    if unsafe { libc::connect(sock.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_timeout(sock.as_raw_fd(), EXCHANGE_TIMEOUT)?;
    Ok(sock)
}

fn seqpacket_listener(path: &Path) -> io::Result<OwnedFd> {
    let sock = seqpacket_socket()?;
    let (addr, len) = unix_addr(path)?;
    // SAFETY: a valid sockaddr_un of `len` bytes; then listen on our own socket.
    unsafe {
        if libc::bind(sock.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::listen(sock.as_raw_fd(), 4) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(sock)
}

fn set_timeout(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: timeout.subsec_micros() as _ };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: setsockopt with a valid timeval.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends one message, with one descriptor in an SCM_RIGHTS control message when `fd` is given.
fn send(sock: RawFd, text: &str, fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: text.as_ptr() as *mut libc::c_void, iov_len: text.len() };
    // u64s: the control buffer must be aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE of one int fits the 64-byte buffer; CMSG_FIRSTHDR points into it.
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    loop {
        // SAFETY: a valid msghdr.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message and the descriptor it carries, if any (close-on-exec). End of stream is an error: the
/// other side went away in the middle of the exchange.
fn recv(sock: RawFd) -> io::Result<(String, Option<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; the pointers set below outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: a valid msghdr with buffers we own.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(io::ErrorKind::TimedOut, "timed out")
            } else {
                e
            });
        }
    };
    let mut fd = None;
    // SAFETY: walking the control messages recvmsg filled in, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let received = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    // One descriptor per message; any extra one is closed by the drop.
                    fd.get_or_insert(received);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a descriptor was lost (control message truncated)"));
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the other process closed the connection"));
    }
    String::from_utf8(buf[..n].to_vec())
        .map(|text| (text, fd))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a message that is not UTF-8"))
}
