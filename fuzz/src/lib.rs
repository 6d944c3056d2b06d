//! The checks behind ferrule's fuzz targets (docs/fuzzing.md). Each `check` takes the fuzzer's bytes, runs one
//! parser over them the way the proxy does, and panics when an invariant the proxy relies on breaks; a panic is
//! what the fuzzer reports as a crash.
//!
//! Targets that frame a byte stream read their first byte as a [`Reads`] seed, so the fuzzer also chooses how
//! the stream is split into reads: resumable parsers must agree with their one-shot versions under any split.

pub mod cluster;
pub mod config;
pub mod memcache_reply;
pub mod memcache_request;
pub mod redis_reply;
pub mod redis_request;

/// Read sizes chosen by the fuzzer: the seed's low three bits pick the largest read (from one byte to the
/// whole stream at once), the rest seed a small generator for the sizes in between.
pub struct Reads {
    max: usize,
    state: u32,
}

impl Reads {
    pub fn new(seed: u8) -> Self {
        const MAX: [usize; 8] = [1, 2, 3, 7, 16, 64, 512, usize::MAX];
        Reads { max: MAX[usize::from(seed & 7)], state: u32::from(seed >> 3) | 0x100 }
    }

    /// The end of the next read, after `end` in a stream of `len` bytes.
    pub fn next_end(&mut self, end: usize, len: usize) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let size = if self.max == usize::MAX { len } else { 1 + self.state as usize % self.max };
        end.saturating_add(size).min(len)
    }
}

/// An error text that goes into a reply line (`-ERR Protocol error: ...`, `SERVER_ERROR ...`) or a log line
/// must say something and must not be able to end that line early.
pub fn assert_one_line(message: &str) {
    assert!(!message.is_empty(), "empty error message");
    assert!(!message.contains(['\r', '\n']), "error message {message:?} would break its reply line");
}
