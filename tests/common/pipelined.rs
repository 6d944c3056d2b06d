//! The pipelined exchange of the differential tests (tests/differential.rs, tests/meta.rs): one long request stream
//! sent through ferrule and straight to a server, the two reply streams compared.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The seed of a randomized test: `FERRULE_DIFF_SEED` replays one, otherwise the clock picks it.
pub fn seed() -> u64 {
    match std::env::var("FERRULE_DIFF_SEED") {
        Ok(s) => s.trim().parse().expect("FERRULE_DIFF_SEED must be an integer"),
        Err(_) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        }
    }
}

/// Sends `stream` to `port` from a writer thread (all at once, or in random chunks of 1..4096 bytes with an
/// occasional 200 µs pause when `chunk_seed` is given) while reading: after each read, `take` gets the bytes not
/// taken yet (it drains what it consumes) and says whether the replies are complete. Returns what `take` left, or
/// why the connection ended early with the bytes not taken.
pub fn exchange(
    port: u16,
    stream: Vec<u8>,
    chunk_seed: Option<u64>,
    mut take: impl FnMut(&mut Vec<u8>) -> bool,
) -> Result<Vec<u8>, (String, Vec<u8>)> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || match chunk_seed {
        None => w.write_all(&stream).unwrap(),
        Some(seed) => {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = rng.gen_range(1..=rest.len().min(4096));
                w.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
                if rng.gen_ratio(1, 20) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    });
    let mut r = s;
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 65536];
    while !take(&mut buf) {
        match r.read(&mut tmp) {
            Ok(0) => return Err(("connection closed".into(), buf)),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err((format!("read failed: {e}"), buf)),
        }
    }
    writer.join().unwrap();
    Ok(buf)
}
