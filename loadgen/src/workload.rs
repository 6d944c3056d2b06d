//! What to send: which keys, which operation, which values.
//!
//! Values are a pure function of the key index and the value-size setting, so `--verify` can
//! check any value read back without remembering what was written, even when several
//! connections write the same key concurrently: every writer writes the same bytes.

use std::ops::RangeInclusive;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// How keys are picked from the keyspace `0..keys`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Key `k` (0-based) drawn with probability proportional to `1/(k+1)^exponent`.
    Zipf {
        /// The skew: 0 is uniform, around 1 is typical of caches, higher is hotter.
        exponent: f64,
    },
    /// Each connection walks the keyspace in order; together the connections cover it once
    /// per pass (also how `--prefill` writes every key exactly once).
    Sequential,
}

/// Picks key indices for one connection.
#[derive(Debug)]
pub struct KeyChooser {
    keys: u64,
    picker: Picker,
}

#[derive(Debug)]
enum Picker {
    Uniform(SmallRng),
    Zipf(SmallRng, Zipf<f64>),
    /// `next` advances by `stride` (the number of connections), wrapping at `keys`.
    Sequential {
        next: u64,
        stride: u64,
    },
}

impl KeyChooser {
    /// A chooser over `keys` keys for connection `stream` of `streams` (used by the sequential
    /// distribution to interleave connections), with its own RNG seeded by `seed`.
    pub fn new(distribution: KeyDistribution, keys: u64, seed: u64, stream: u64, streams: u64) -> Result<Self, String> {
        if keys == 0 {
            return Err("the keyspace must hold at least one key".into());
        }
        let rng = SmallRng::seed_from_u64(seed);
        let picker = match distribution {
            KeyDistribution::Uniform => Picker::Uniform(rng),
            KeyDistribution::Zipf { exponent } => {
                let zipf = Zipf::new(keys, exponent).map_err(|err| format!("zipf exponent {exponent}: {err}"))?;
                Picker::Zipf(rng, zipf)
            }
            KeyDistribution::Sequential => Picker::Sequential { next: stream % keys, stride: streams.max(1) },
        };
        Ok(Self { keys, picker })
    }

    /// The next key index, in `0..keys`.
    pub fn next_key(&mut self) -> u64 {
        match &mut self.picker {
            Picker::Uniform(rng) => rng.gen_range(0..self.keys),
            // Zipf samples ranks 1..=keys as floats; rank 1 is the hottest key, index 0.
            Picker::Zipf(rng, zipf) => (zipf.sample(rng) as u64).clamp(1, self.keys) - 1,
            Picker::Sequential { next, stride } => {
                let key = *next;
                *next = (*next + *stride) % self.keys;
                key
            }
        }
    }
}

/// The operation kinds the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// Single-key read.
    Get,
    /// Multi-key read (`MGET` / `get k1 k2 ...`).
    Mget,
    /// Write.
    Set,
}

impl OpKind {
    /// Position in per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lowercase name used in file names and JSON.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Mget => "mget",
            OpKind::Set => "set",
        }
    }

    /// True for reads, which have hits and misses.
    pub fn is_read(self) -> bool {
        matches!(self, OpKind::Get | OpKind::Mget)
    }
}

/// `--ratio SET:GET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    /// Writes per cycle.
    pub sets: u32,
    /// Reads per cycle.
    pub gets: u32,
}

impl std::str::FromStr for Ratio {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (sets, gets) = text.split_once(':').ok_or_else(|| format!("ratio {text:?} is not SET:GET, e.g. 1:10"))?;
        let parse = |part: &str| {
            part.trim().parse::<u32>().map_err(|_| format!("ratio {text:?}: {part:?} is not a whole number"))
        };
        let ratio = Ratio { sets: parse(sets)?, gets: parse(gets)? };
        if ratio.sets == 0 && ratio.gets == 0 {
            return Err("ratio 0:0 sends nothing".into());
        }
        Ok(ratio)
    }
}

/// Chooses each request's operation so that every `sets + gets` consecutive requests hold
/// exactly `sets` writes, spread out rather than bunched.
#[derive(Debug)]
pub struct OpMix {
    ratio: Ratio,
    read_kind: OpKind,
    position: u64,
}

impl OpMix {
    /// `read_kind` is `Get`, or `Mget` when multi-key reads were asked for. `start` offsets the
    /// cycle so connections do not all write at the same moment.
    pub fn new(ratio: Ratio, read_kind: OpKind, start: u64) -> Self {
        Self { ratio, read_kind, position: start }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> OpKind {
        let is_set = self.sets_in(self.position, 1) == 1;
        self.position = self.position.wrapping_add(1);
        if is_set {
            OpKind::Set
        } else {
            self.read_kind
        }
    }

    /// Skips `count` operations at once and returns how many of them were writes (the rest
    /// being reads), as calling [`OpMix::next_op`] `count` times would.
    pub fn skip(&mut self, count: u64) -> u64 {
        let sets = self.sets_in(self.position, count);
        self.position = self.position.wrapping_add(count);
        sets
    }

    /// Writes among the `count` operations from position `from`: a write happens where the
    /// running share of writes, `position * sets / cycle`, crosses a whole number.
    fn sets_in(&self, from: u64, count: u64) -> u64 {
        let sets = u128::from(self.ratio.sets);
        let cycle = sets + u128::from(self.ratio.gets);
        // The pattern repeats every cycle, so reduce the start to keep the products small.
        let start = u128::from(from) % cycle;
        let end = start + u128::from(count);
        let writes = end * sets / cycle - start * sets / cycle;
        u64::try_from(writes).unwrap_or(u64::MAX)
    }
}

/// Value sizes: `--value-size 100` or a range `--value-size 64-1024`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueSize {
    range: RangeInclusive<usize>,
}

impl std::str::FromStr for ValueSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |part: &str| {
            part.trim().parse::<usize>().map_err(|_| format!("value size {text:?}: {part:?} is not a byte count"))
        };
        let (min, max) = match text.split_once('-') {
            Some((min, max)) => (parse(min)?, parse(max)?),
            None => {
                let size = parse(text)?;
                (size, size)
            }
        };
        if min > max {
            return Err(format!("value size {text:?}: minimum above maximum"));
        }
        Ok(Self { range: min..=max })
    }
}

impl std::fmt::Display for ValueSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (min, max) = (self.range.start(), self.range.end());
        if min == max {
            write!(f, "{min}")
        } else {
            write!(f, "{min}-{max}")
        }
    }
}

impl ValueSize {
    /// A fixed size.
    #[cfg(test)]
    pub fn fixed(size: usize) -> Self {
        Self { range: size..=size }
    }

    /// Largest value this setting produces.
    pub fn max(&self) -> usize {
        *self.range.end()
    }

    /// Length of the value stored under key `key`, within the configured range.
    pub fn len_for(&self, key: u64) -> usize {
        let (min, max) = (*self.range.start(), *self.range.end());
        let span = (max - min) as u64 + 1;
        min + (mix64(key) % span) as usize
    }
}

/// Builds values: `"<key index>:"` followed by a key-dependent run of letters and digits,
/// cut to the key's length. The prefix makes a value stored under the wrong key detectable.
#[derive(Debug)]
pub struct ValueMaker {
    size: ValueSize,
    /// One alphabet cycle longer than the largest value, so any value is a sub-slice.
    pattern: Vec<u8>,
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl ValueMaker {
    /// Precomputes the fill pattern for values up to `size.max()` bytes.
    pub fn new(size: ValueSize) -> Self {
        let pattern = ALPHABET.iter().copied().cycle().take(size.max() + ALPHABET.len()).collect();
        Self { size, pattern }
    }

    /// Appends the value of key `key` to `out`.
    pub fn write_value(&self, key: u64, out: &mut Vec<u8>) {
        let len = self.size.len_for(key);
        let start = out.len();
        ferrule::protocol::push_decimal(out, key);
        out.push(b':');
        out.truncate(start + len);
        let filled = out.len() - start;
        let offset = (mix64(key) % ALPHABET.len() as u64) as usize;
        let rest = len - filled;
        out.extend_from_slice(&self.pattern[offset..offset + rest]);
    }

    /// True when `value` is exactly what [`ValueMaker::write_value`] makes for `key`;
    /// `scratch` is reused to avoid allocating per check.
    pub fn matches(&self, key: u64, value: &[u8], scratch: &mut Vec<u8>) -> bool {
        scratch.clear();
        self.write_value(key, scratch);
        scratch.as_slice() == value
    }
}

/// Appends `prefix` followed by `key` in decimal: the key name sent on the wire.
pub fn write_key(prefix: &[u8], key: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(prefix);
    ferrule::protocol::push_decimal(out, key);
}

/// Parses the key index back out of a key name made by [`write_key`].
pub fn parse_key(prefix: &[u8], name: &[u8]) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// A cheap, well-spread hash of a key index (splitmix64's finaliser).
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(distribution: KeyDistribution, keys: u64, n: usize) -> Vec<u64> {
        let mut chooser = KeyChooser::new(distribution, keys, 7, 0, 1).unwrap();
        (0..n).map(|_| chooser.next_key()).collect()
    }

    #[test]
    fn uniform_covers_the_keyspace_evenly() {
        let keys = 100;
        let mut counts = vec![0u32; keys as usize];
        for key in sample(KeyDistribution::Uniform, keys, 100_000) {
            counts[key as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 800 && *max < 1200, "{min}..{max}");
    }

    #[test]
    fn zipf_makes_low_keys_hot() {
        let keys = 1000;
        let picks = sample(KeyDistribution::Zipf { exponent: 1.0 }, keys, 200_000);
        assert!(picks.iter().all(|&k| k < keys));
        let count = |k| picks.iter().filter(|&&p| p == k).count() as f64;
        // P(k) is proportional to 1/(k+1): key 0 is about twice as frequent as key 1 and ten
        // times as frequent as key 9.
        let ratio_1 = count(0) / count(1);
        let ratio_9 = count(0) / count(9);
        assert!((ratio_1 - 2.0).abs() < 0.2, "{ratio_1}");
        assert!((ratio_9 - 10.0).abs() < 1.5, "{ratio_9}");
        // With H(1000) = 7.485, key 0 takes 1/7.485 = 13.4% of requests.
        let share = count(0) / picks.len() as f64;
        assert!((share - 0.1336).abs() < 0.01, "{share}");
    }

    #[test]
    fn zipf_rejects_bad_exponents() {
        let err = KeyChooser::new(KeyDistribution::Zipf { exponent: -1.0 }, 10, 1, 0, 1);
        assert!(err.is_err());
        assert!(KeyChooser::new(KeyDistribution::Uniform, 0, 1, 0, 1).is_err());
    }

    #[test]
    fn sequential_connections_interleave_to_cover_every_key_once() {
        let keys = 10;
        let streams = 3;
        let mut seen = Vec::new();
        for stream in 0..streams {
            let mut chooser = KeyChooser::new(KeyDistribution::Sequential, keys, 1, stream, streams).unwrap();
            // Connection s takes keys s, s+3, s+6, ... (its share of one pass).
            let share = (keys - stream).div_ceil(streams);
            seen.extend((0..share).map(|_| chooser.next_key()));
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..keys).collect::<Vec<_>>());
        let mut wraps = KeyChooser::new(KeyDistribution::Sequential, 4, 1, 1, 3).unwrap();
        let walk: Vec<u64> = (0..4).map(|_| wraps.next_key()).collect();
        assert_eq!(walk, vec![1, 0, 3, 2]);
    }

    #[test]
    fn op_mix_keeps_the_exact_ratio_and_spreads_writes() {
        let ratio: Ratio = "1:10".parse().unwrap();
        let mut mix = OpMix::new(ratio, OpKind::Get, 0);
        let ops: Vec<OpKind> = (0..1100).map(|_| mix.next_op()).collect();
        let sets = ops.iter().filter(|&&op| op == OpKind::Set).count();
        assert_eq!(sets, 100);
        // Exactly one write in every window of 11.
        for window in ops.chunks(11) {
            assert_eq!(window.iter().filter(|&&op| op == OpKind::Set).count(), 1);
        }
        let ratio: Ratio = "3:5".parse().unwrap();
        let mut mix = OpMix::new(ratio, OpKind::Mget, 5);
        let ops: Vec<OpKind> = (0..8).map(|_| mix.next_op()).collect();
        assert_eq!(ops.iter().filter(|&&op| op == OpKind::Set).count(), 3);
        assert_eq!(ops.iter().filter(|&&op| op == OpKind::Mget).count(), 5);
        let mut only_sets = OpMix::new("1:0".parse().unwrap(), OpKind::Get, 0);
        assert!((0..10).all(|_| only_sets.next_op() == OpKind::Set));
        let mut only_gets = OpMix::new("0:1".parse().unwrap(), OpKind::Get, 0);
        assert!((0..10).all(|_| only_gets.next_op() == OpKind::Get));
    }

    #[test]
    fn skipping_operations_matches_stepping_through_them() {
        for (ratio, start, count) in [("1:10", 0, 0), ("1:10", 3, 25), ("3:5", 7, 1000), ("7:0", 2, 9)] {
            let ratio: Ratio = ratio.parse().unwrap();
            let mut stepped = OpMix::new(ratio, OpKind::Get, start);
            let writes = (0..count).filter(|_| stepped.next_op() == OpKind::Set).count() as u64;
            let mut skipped = OpMix::new(ratio, OpKind::Get, start);
            assert_eq!(skipped.skip(count), writes, "{ratio:?} from {start}, {count} ops");
            assert_eq!(skipped.next_op(), stepped.next_op());
        }
        let mut huge = OpMix::new(Ratio { sets: u32::MAX, gets: u32::MAX }, OpKind::Get, u64::MAX);
        assert_eq!(huge.skip(u64::MAX - 1), u64::MAX / 2);
    }

    #[test]
    fn ratio_parsing() {
        assert_eq!("2:3".parse::<Ratio>(), Ok(Ratio { sets: 2, gets: 3 }));
        assert!("0:0".parse::<Ratio>().is_err());
        assert!("1-3".parse::<Ratio>().is_err());
        assert!("a:3".parse::<Ratio>().is_err());
    }

    #[test]
    fn value_sizes_stay_in_range_and_depend_on_the_key() {
        let size: ValueSize = "10-20".parse().unwrap();
        let lens: Vec<usize> = (0..1000).map(|k| size.len_for(k)).collect();
        assert!(lens.iter().all(|l| (10..=20).contains(l)));
        assert!(lens.contains(&10) && lens.contains(&20));
        assert_eq!(size.len_for(5), size.len_for(5));
        assert_eq!("7".parse::<ValueSize>().unwrap(), ValueSize::fixed(7));
        assert!("9-3".parse::<ValueSize>().is_err());
        assert!("big".parse::<ValueSize>().is_err());
    }

    #[test]
    fn values_are_reproducible_and_distinguish_keys() {
        let maker = ValueMaker::new("1-300".parse().unwrap());
        let mut scratch = Vec::new();
        for key in [0, 1, 42, 123_456_789, u64::MAX] {
            let mut value = Vec::new();
            maker.write_value(key, &mut value);
            assert_eq!(value.len(), maker.size.len_for(key));
            assert!(maker.matches(key, &value, &mut scratch));
            if value.len() > 4 {
                assert!(!maker.matches(key.wrapping_add(1), &value, &mut scratch));
            }
        }
        let maker = ValueMaker::new(ValueSize::fixed(12));
        let mut value = Vec::new();
        maker.write_value(42, &mut value);
        assert!(value.starts_with(b"42:"), "{value:?}");
        assert_eq!(value.len(), 12);
        let maker = ValueMaker::new(ValueSize::fixed(0));
        let mut value = Vec::new();
        maker.write_value(42, &mut value);
        assert!(value.is_empty());
    }

    #[test]
    fn keys_round_trip_through_their_names() {
        let mut name = Vec::new();
        write_key(b"key:", 0, &mut name);
        assert_eq!(name, b"key:0");
        name.clear();
        write_key(b"p", u64::MAX, &mut name);
        assert_eq!(parse_key(b"p", &name), Some(u64::MAX));
        assert_eq!(parse_key(b"key:", b"key:"), None);
        assert_eq!(parse_key(b"key:", b"other:1"), None);
        assert_eq!(parse_key(b"key:", b"key:1x"), None);
        assert_eq!(parse_key(b"", b"99999999999999999999"), None);
    }
}
