//! Server distributions (ketama, modula, random) built exactly as twemproxy builds them.

use std::cell::{Cell, RefCell};

use super::functions::{digest_word, md5_digest};
use super::DistributionKind;

/// One server of a pool as the distribution sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingMember<'a> {
    /// The identity hashed onto the ketama ring (see [`super::ketama_ident`]).
    pub ident: &'a str,
    /// Relative share of the keys; twemproxy requires it to be at least 1.
    pub weight: u32,
    /// False while the server is ejected: it then takes no part in the distribution.
    pub live: bool,
}

/// twemproxy's `KETAMA_POINTS_PER_SERVER`: points a server of average weight gets.
const KETAMA_POINTS_PER_SERVER: f32 = 160.0;
/// Points derived from one MD5 digest (one 32-bit point per digest word).
const KETAMA_POINTS_PER_DIGEST: u32 = 4;
/// twemproxy formats "<ident>-<i>" into a 273-byte buffer, so at most 272 bytes are hashed.
const KETAMA_MAX_POINT_KEY_LEN: usize = 272;

/// Seed of the random distribution's generator; any non-zero value works.
const DEFAULT_RANDOM_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// A built distribution over a pool's servers. Indices returned refer to positions in the slice
/// given to [`Ring::build`]. Rebuild it whenever a member's liveness or weight changes.
#[derive(Debug)]
pub struct Ring {
    kind: DistributionKind,
    /// Ketama: the continuum's point values, sorted ascending (parallel to `point_servers`).
    point_values: Vec<u32>,
    /// Ketama: the member index owning each point.
    point_servers: Vec<u32>,
    /// Modula: the running total of live weights, one entry per live member (parallel to
    /// `live_members`). Equivalent to twemproxy's list where each server appears `weight` times,
    /// without materialising it.
    weight_ends: Vec<u64>,
    /// Live member indices in member order.
    live_members: Vec<u32>,
    /// Number of members given to `build` (live or not).
    member_count: usize,
    /// State of the random distribution's xorshift generator.
    rng_state: Cell<u64>,
    /// WeightedCh3: each member's weight as mcrouter's fraction (config weight / 1_000_000, at most 1).
    fractions: Vec<f64>,
    /// WeightedCh3: the salted key of a retry, reused across lookups.
    scratch: RefCell<Vec<u8>>,
}

/// WeightedCh3 weights are written in parts per million of mcrouter's full weight 1.0.
pub const WEIGHT_PARTS_PER_UNIT: u32 = 1_000_000;

impl Ring {
    /// Builds the distribution from the members in pool order; ejected members are left out.
    pub fn build(kind: DistributionKind, members: &[RingMember<'_>]) -> Ring {
        if kind.is_mcrouter() {
            return Ring::build_mcrouter(kind, members);
        }
        let mut live_members: Vec<u32> =
            members.iter().enumerate().filter(|(_, member)| member.live).map(|(index, _)| index as u32).collect();
        // twemproxy sorts a pool's servers by identity (shorter first, then bytewise: its string_compare) while
        // validating the config, and builds every distribution in that order. Modula placement depends on it.
        live_members.sort_by(|&a, &b| {
            let (a, b) = (members[a as usize].ident.as_bytes(), members[b as usize].ident.as_bytes());
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        });
        let mut ring = Ring {
            kind,
            point_values: Vec::new(),
            point_servers: Vec::new(),
            weight_ends: Vec::new(),
            live_members,
            member_count: members.len(),
            rng_state: Cell::new(DEFAULT_RANDOM_SEED),
            fractions: Vec::new(),
            scratch: RefCell::new(Vec::new()),
        };
        match kind {
            DistributionKind::Ketama => ring.build_ketama(members),
            DistributionKind::Modula => ring.build_modula(members),
            _ => {}
        }
        ring
    }

    /// mcrouter's pools: every member in config order, live or not (mcrouter never moves keys off a failing
    /// server; config validation refuses auto_eject_hosts with these distributions).
    fn build_mcrouter(kind: DistributionKind, members: &[RingMember<'_>]) -> Ring {
        let fractions = match kind {
            DistributionKind::WeightedCh3 => {
                members.iter().map(|m| (f64::from(m.weight) / f64::from(WEIGHT_PARTS_PER_UNIT)).min(1.0)).collect()
            }
            _ => Vec::new(),
        };
        Ring {
            kind,
            point_values: Vec::new(),
            point_servers: Vec::new(),
            weight_ends: Vec::new(),
            live_members: (0..members.len() as u32).collect(),
            member_count: members.len(),
            rng_state: Cell::new(DEFAULT_RANDOM_SEED),
            fractions,
            // Room for a typical key and its salt, so that retries do not allocate.
            scratch: RefCell::new(Vec::with_capacity(256)),
        }
    }

    /// mcrouter's distributions: the member for the (already hash-stopped) key; None for other distributions.
    pub fn locate_mcrouter(&self, key: &[u8]) -> Option<usize> {
        let n = self.member_count;
        if n == 0 {
            return None;
        }
        match self.kind {
            DistributionKind::Ch3 => Some(super::mcrouter::ch3(key, n)),
            DistributionKind::McrouterCrc32 => Some(super::mcrouter::crc32_index(key, n)),
            DistributionKind::WeightedCh3 => {
                // A lookup never re-enters itself, so the borrow is always free; fall back to a fresh buffer if not.
                let index = match self.scratch.try_borrow_mut() {
                    Ok(mut scratch) => super::mcrouter::weighted_ch3(key, &self.fractions, &mut scratch),
                    Err(_) => super::mcrouter::weighted_ch3(key, &self.fractions, &mut Vec::new()),
                };
                Some(index)
            }
            _ => None,
        }
    }

    fn build_ketama(&mut self, members: &[RingMember<'_>]) {
        let live_count = self.live_members.len() as u32;
        let total_weight: u64 = self.live_weights(members).map(u64::from).sum();
        let mut points: Vec<(u32, u32)> = Vec::new();
        let mut point_key: Vec<u8> = Vec::with_capacity(KETAMA_MAX_POINT_KEY_LEN + 24);
        for &index in &self.live_members {
            let Some(member) = members.get(index as usize) else {
                continue;
            };
            let point_count = ketama_point_count(member.weight, total_weight, live_count);
            for digest_index in 0..point_count / KETAMA_POINTS_PER_DIGEST {
                ketama_point_key(&mut point_key, member.ident, digest_index);
                let digest = md5_digest(&point_key);
                for word in 0..KETAMA_POINTS_PER_DIGEST as usize {
                    points.push((digest_word(&digest, word), index));
                }
            }
        }
        // Stable sort on the value alone: equal points (a 32-bit collision, practically never
        // seen) keep insertion order, as glibc's merge-sort `qsort` keeps them for twemproxy.
        points.sort_by_key(|&(value, _)| value);
        self.point_values = points.iter().map(|&(value, _)| value).collect();
        self.point_servers = points.iter().map(|&(_, server)| server).collect();
    }

    fn build_modula(&mut self, members: &[RingMember<'_>]) {
        let mut running_total: u64 = 0;
        self.weight_ends = self
            .live_weights(members)
            .map(|weight| {
                running_total += u64::from(weight);
                running_total
            })
            .collect();
    }

    /// Weights of the live members, in member order.
    fn live_weights<'m>(&'m self, members: &'m [RingMember<'_>]) -> impl Iterator<Item = u32> + 'm {
        self.live_members.iter().filter_map(|&index| members.get(index as usize)).map(|member| member.weight)
    }

    /// The distribution this ring was built for.
    pub fn kind(&self) -> DistributionKind {
        self.kind
    }

    /// Number of members given to [`Ring::build`], live or not.
    pub fn member_count(&self) -> usize {
        self.member_count
    }

    /// Number of live members.
    pub fn live_count(&self) -> usize {
        self.live_members.len()
    }

    /// The only live member, when exactly one is live.
    pub fn sole_live_member(&self) -> Option<usize> {
        match self.live_members.as_slice() {
            [only] => Some(*only as usize),
            _ => None,
        }
    }

    /// Restarts the random distribution's generator from `seed`, so that rings on different
    /// cores need not pick the same sequence of servers. A zero seed is replaced by the default.
    pub fn reseed(&self, seed: u64) {
        let seed = if seed == 0 { DEFAULT_RANDOM_SEED } else { seed };
        self.rng_state.set(seed);
    }

    /// Server index for a key hash; None when no member is live. For Random, picks a random
    /// live member and ignores `hash`.
    pub fn locate(&self, hash: u32) -> Option<usize> {
        match self.kind {
            DistributionKind::Ketama => self.locate_ketama(hash),
            DistributionKind::Modula => self.locate_modula(hash),
            DistributionKind::Random => self.locate_random(),
            // These hash the key itself: see locate_mcrouter.
            DistributionKind::Ch3 | DistributionKind::WeightedCh3 | DistributionKind::McrouterCrc32 => None,
        }
    }

    /// The owner of the first point >= `hash`, wrapping to the first point.
    fn locate_ketama(&self, hash: u32) -> Option<usize> {
        let position = self.point_values.partition_point(|&value| value < hash);
        let position = if position == self.point_values.len() { 0 } else { position };
        self.point_servers.get(position).map(|&server| server as usize)
    }

    /// `hash % total_weight` over the live members, each owning `weight` consecutive slots.
    fn locate_modula(&self, hash: u32) -> Option<usize> {
        let total = *self.weight_ends.last()?;
        if total == 0 {
            return None;
        }
        let slot = u64::from(hash) % total;
        let position = self.weight_ends.partition_point(|&end| end <= slot);
        self.live_members.get(position).map(|&server| server as usize)
    }

    fn locate_random(&self) -> Option<usize> {
        let live = self.live_members.len() as u64;
        if live == 0 {
            return None;
        }
        let pick = (self.next_random() % live) as usize;
        self.live_members.get(pick).map(|&server| server as usize)
    }

    /// xorshift64*: plenty for spreading requests, and allocation- and lock-free.
    fn next_random(&self) -> u64 {
        let mut state = self.rng_state.get();
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        self.rng_state.set(state);
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The sorted ketama continuum as (point, member index) pairs; empty for other distributions.
    pub fn continuum(&self) -> impl Iterator<Item = (u32, usize)> + '_ {
        self.point_values.iter().zip(&self.point_servers).map(|(&value, &server)| (value, server as usize))
    }
}

/// Points a live member gets on the ketama continuum, computed with the same C `float` steps as
/// twemproxy (`floorf(pct * 160 / 4 * nlive + 1e-10) * 4`), because the rounding decides whether
/// members of odd weights get one group of four points more or less.
pub(crate) fn ketama_point_count(weight: u32, total_weight: u64, live_count: u32) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let scaled = pct * KETAMA_POINTS_PER_SERVER / KETAMA_POINTS_PER_DIGEST as f32 * live_count as f32;
    // The C expression adds a `double` literal, so the sum is a double narrowed back to float.
    let nudged = (f64::from(scaled) + 0.000_000_000_1) as f32;
    // `as` saturates: NaN (zero total weight) and negatives become 0 points.
    (nudged.floor() * KETAMA_POINTS_PER_DIGEST as f32) as u32
}

/// Writes "<ident>-<digest_index>" into `buffer`, cut at the 272 bytes twemproxy keeps.
fn ketama_point_key(buffer: &mut Vec<u8>, ident: &str, digest_index: u32) {
    use std::io::Write;
    buffer.clear();
    buffer.extend_from_slice(ident.as_bytes());
    // Writing into a Vec cannot fail.
    let _ = write!(buffer, "-{digest_index}");
    buffer.truncate(KETAMA_MAX_POINT_KEY_LEN);
}

/// twemproxy's `ketama_hash(key, alignment)`: word `alignment` of md5(key).
#[cfg(test)]
pub(crate) fn ketama_hash(key: &[u8], alignment: usize) -> u32 {
    digest_word(&md5_digest(key), alignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(ident: &str, weight: u32) -> RingMember<'_> {
        RingMember { ident, weight, live: true }
    }

    #[test]
    fn ketama_hash_vectors_from_the_reference() {
        assert_eq!(ketama_hash(b"server1-8", 0), 3_853_726_576);
        assert_eq!(ketama_hash(b"server1-8", 3), 2_667_054_752);
    }

    #[test]
    fn point_counts_follow_float_math() {
        // Equal weights: 160 points each, whatever the server count.
        for live in 1..=20 {
            assert_eq!(ketama_point_count(1, u64::from(live), live), 160, "{live}");
        }
        // Weights 1,2,3: 80, 160, 240.
        assert_eq!(ketama_point_count(1, 6, 3), 80);
        assert_eq!(ketama_point_count(2, 6, 3), 160);
        assert_eq!(ketama_point_count(3, 6, 3), 240);
        // Weights 1,6,6,6,6: 1/25 and 6/25 of 200 are exactly 8 and 48
        // groups, but float math lands just below, so floor gives 7 and 47.
        assert_eq!(ketama_point_count(1, 25, 5), 28);
        assert_eq!(ketama_point_count(6, 25, 5), 188);
        // Zero total weight must not panic.
        assert_eq!(ketama_point_count(0, 0, 1), 0);
    }

    #[test]
    fn point_key_is_cut_like_snprintf() {
        let mut buffer = Vec::new();
        ketama_point_key(&mut buffer, "server1", 8);
        assert_eq!(buffer, b"server1-8");
        let long = "x".repeat(300);
        ketama_point_key(&mut buffer, &long, 123);
        assert_eq!(buffer.len(), KETAMA_MAX_POINT_KEY_LEN);
    }

    #[test]
    fn ketama_continuum_is_sorted_and_sized_by_weight() {
        let members = [member("a", 1), member("b", 2), member("c", 3)];
        let ring = Ring::build(DistributionKind::Ketama, &members);
        let points: Vec<(u32, usize)> = ring.continuum().collect();
        assert_eq!(points.len(), 480);
        assert!(points.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        for (server, expected) in [(0, 80), (1, 160), (2, 240)] {
            assert_eq!(points.iter().filter(|p| p.1 == server).count(), expected);
        }
    }

    #[test]
    fn ketama_lookup_takes_first_point_at_or_above_and_wraps() {
        let members = [member("a", 1), member("b", 1)];
        let ring = Ring::build(DistributionKind::Ketama, &members);
        let points: Vec<(u32, usize)> = ring.continuum().collect();
        let (first_value, first_server) = points[0];
        let (last_value, _) = points[points.len() - 1];
        assert_eq!(ring.locate(first_value), Some(first_server));
        assert_eq!(ring.locate(0), Some(first_server));
        assert_eq!(ring.locate(last_value.wrapping_add(1)), Some(first_server));
        let (tenth_value, tenth_server) = points[10];
        assert_eq!(ring.locate(tenth_value), Some(tenth_server));
        assert_eq!(ring.locate(points[9].0 + 1), Some(tenth_server));
    }

    #[test]
    fn ejected_members_get_no_points_and_no_keys() {
        let mut members = [member("a", 1), member("b", 1), member("c", 1)];
        members[1].live = false;
        for kind in [DistributionKind::Ketama, DistributionKind::Modula, DistributionKind::Random] {
            let ring = Ring::build(kind, &members);
            assert_eq!(ring.live_count(), 2);
            assert_eq!(ring.member_count(), 3);
            for hash in (0..u32::MAX).step_by(9_999_991) {
                let server = ring.locate(hash);
                assert!(matches!(server, Some(0) | Some(2)), "{kind:?} {hash} {server:?}");
            }
        }
        // Two live members over three members: the same ring as a pool of those two alone.
        let ring = Ring::build(DistributionKind::Ketama, &members);
        let alone = Ring::build(DistributionKind::Ketama, &[member("a", 1), member("c", 1)]);
        let remap = |(value, server): (u32, usize)| (value, if server == 1 { 2 } else { server });
        assert!(ring.continuum().eq(alone.continuum().map(remap)));
    }

    #[test]
    fn no_live_member_locates_nothing() {
        let members = [RingMember { ident: "a", weight: 1, live: false }];
        for kind in [DistributionKind::Ketama, DistributionKind::Modula, DistributionKind::Random] {
            let ring = Ring::build(kind, &members);
            assert_eq!(ring.live_count(), 0);
            assert_eq!(ring.locate(12345), None);
            let empty = Ring::build(kind, &[]);
            assert_eq!(empty.locate(12345), None);
        }
    }

    #[test]
    fn modula_repeats_each_member_weight_times() {
        let members = [member("a", 1), member("b", 2), member("c", 3)];
        let ring = Ring::build(DistributionKind::Modula, &members);
        let expected = [0, 1, 1, 2, 2, 2];
        for hash in 0..60u32 {
            assert_eq!(ring.locate(hash), Some(expected[(hash % 6) as usize]));
        }
        assert_eq!(ring.locate(u32::MAX), Some(expected[(u32::MAX % 6) as usize]));
        // With "b" ejected the list is [a, c, c, c].
        let mut members = members;
        members[1].live = false;
        let ring = Ring::build(DistributionKind::Modula, &members);
        let expected = [0, 2, 2, 2];
        for hash in 0..40u32 {
            assert_eq!(ring.locate(hash), Some(expected[(hash % 4) as usize]));
        }
    }

    #[test]
    fn random_picks_every_live_member_and_ignores_the_hash() {
        let mut members = [member("a", 1), member("b", 1), member("c", 1), member("d", 1)];
        members[2].live = false;
        let ring = Ring::build(DistributionKind::Random, &members);
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            if let Some(server) = ring.locate(7) {
                seen[server] += 1;
            }
        }
        assert_eq!(seen[2], 0);
        for server in [0, 1, 3] {
            assert!((1000..1700).contains(&seen[server]), "{seen:?}");
        }
        ring.reseed(0);
        let first: Vec<_> = (0..8).map(|_| ring.locate(0)).collect();
        ring.reseed(0);
        let again: Vec<_> = (0..8).map(|_| ring.locate(0)).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn ring_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Ring>();
    }
}
