//! The binary upgrade's hand-over protocol, without I/O: what the messages between the running ferrule and its
//! successor say, and which of the passed sockets each of the successor's workers serves. `io::takeover` moves the
//! messages and the descriptors (SCM_RIGHTS over a unix SOCK_SEQPACKET socket: one message per descriptor, so
//! message boundaries say which descriptor a line describes).
//!
//! The exchange: the successor sends [`HELLO`]; the running process answers with one [`Entry`] line per listening
//! socket, each carrying that socket's descriptor, then `end <count>`; the successor starts serving on them and
//! sends `ready <pid>`; the running process answers [`ACK`], stops accepting and drains.

/// The successor's first message (the protocol's version is in it).
pub const HELLO: &str = "ferrule-takeover 1";
/// The running process's answer to `ready`: it stops accepting now.
pub const ACK: &str = "draining";

/// What a passed listening socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client listener's socket of one worker (TCP listeners have one per worker, by SO_REUSEPORT).
    Listener,
    /// The admin endpoint (`proxy.admin`).
    Admin,
    /// The raw stats port (`proxy.stats_port`).
    Stats,
    /// The upgrade socket itself, so the successor can be upgraded in turn at the same path.
    Upgrade,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Listener => "listener",
            Kind::Admin => "admin",
            Kind::Stats => "stats",
            Kind::Upgrade => "upgrade",
        }
    }
}

/// One passed socket: its kind, the worker that served it, and its address as the config writes it
/// (`ListenAddr`'s or `SocketAddr`'s `Display`, a unix path for a unix listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub worker: usize,
    pub addr: String,
}

impl Entry {
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.kind.name(), self.worker, self.addr)
    }

    /// Parses [`encode`](Self::encode)'s line; the address is the rest of the line (a unix path may hold spaces).
    pub fn decode(line: &str) -> Result<Entry, String> {
        let mut parts = line.splitn(3, ' ');
        let (Some(kind), Some(worker), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("takeover: malformed socket description {line:?}"));
        };
        let kind = match kind {
            "listener" => Kind::Listener,
            "admin" => Kind::Admin,
            "stats" => Kind::Stats,
            "upgrade" => Kind::Upgrade,
            other => return Err(format!("takeover: unknown socket kind {other:?} in {line:?}")),
        };
        let worker = worker.parse().map_err(|_| format!("takeover: bad worker number in {line:?}"))?;
        if addr.is_empty() {
            return Err(format!("takeover: no address in {line:?}"));
        }
        Ok(Entry { kind, worker, addr: addr.to_string() })
    }
}

/// The `end <count>` message after the last socket.
pub fn end_message(count: usize) -> String {
    format!("end {count}")
}

/// The count of an `end <count>` message, `None` for any other message.
pub fn parse_end(message: &str) -> Option<usize> {
    message.strip_prefix("end ")?.parse().ok()
}

/// The successor's `ready <pid>` message, sent once every worker serves.
pub fn ready_message(pid: u32) -> String {
    format!("ready {pid}")
}

pub fn parse_ready(message: &str) -> Option<u32> {
    message.strip_prefix("ready ")?.parse().ok()
}

/// Which of a listener's `passed` sockets (ordered by the old worker that served them) new worker `worker` of
/// `workers` serves: every socket goes to exactly one worker, round-robin, so a successor with fewer workers serves
/// several sockets on some of them (none of the old accept queues is dropped) and one with more binds fresh sockets
/// on the workers that get none (they join the same SO_REUSEPORT group).
pub fn share(worker: usize, workers: usize, passed: usize) -> Vec<usize> {
    let workers = workers.max(1);
    (0..passed).filter(|j| j % workers == worker).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for entry in [
            Entry { kind: Kind::Listener, worker: 3, addr: "127.0.0.1:22121".into() },
            Entry { kind: Kind::Listener, worker: 0, addr: "/run/ferrule/a socket.sock".into() },
            Entry { kind: Kind::Admin, worker: 0, addr: "[::1]:22222".into() },
            Entry { kind: Kind::Stats, worker: 0, addr: "0.0.0.0:22223".into() },
            Entry { kind: Kind::Upgrade, worker: 0, addr: "/run/ferrule/upgrade.sock".into() },
        ] {
            assert_eq!(Entry::decode(&entry.encode()), Ok(entry));
        }
    }

    #[test]
    fn bad_entries_are_errors() {
        for line in ["", "listener", "listener 1", "listener x 1.2.3.4:5", "socket 0 1.2.3.4:5", "listener 0 "] {
            assert!(Entry::decode(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn end_and_ready_parse() {
        assert_eq!(parse_end(&end_message(7)), Some(7));
        assert_eq!(parse_end("listener 0 x"), None);
        assert_eq!(parse_ready(&ready_message(4242)), Some(4242));
        assert_eq!(parse_ready("ready"), None);
    }

    #[test]
    fn every_passed_socket_gets_exactly_one_worker() {
        for (workers, passed) in [(1, 4), (2, 4), (4, 2), (3, 7), (4, 4), (2, 0)] {
            let mut seen: Vec<usize> = (0..workers).flat_map(|w| share(w, workers, passed)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..passed).collect::<Vec<_>>(), "{workers} workers, {passed} sockets");
        }
        assert_eq!(share(1, 2, 4), vec![1, 3], "fewer workers: some serve several sockets");
        assert!(share(3, 4, 2).is_empty(), "more workers: the extra ones bind their own");
    }
}
