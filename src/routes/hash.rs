//! `hash`: mcrouter's HashRoute. The child is picked by the key's hash (`hash`, any of the pool hashes; default
//! fnv1a_64), mixed and fed to a jump consistent hash (Lamping and Veach) over the children: a key always reaches the
//! same child while the children stay the same, keys spread evenly, and adding a child at the end moves only the
//! keys the new child takes. Unlike a pool it does not skip ejected servers: pair it with `failover` for that.

use crate::config::Target;
use crate::hash::HashKind;

pub struct HashRoute {
    children: Vec<Target>,
    hash: HashKind,
}

impl HashRoute {
    pub fn new(children: &[Target], hash: HashKind) -> HashRoute {
        HashRoute { children: children.to_vec(), hash }
    }

    pub fn choose(&self, key: &[u8]) -> Target {
        self.children[jump(super::mix(u64::from(self.hash.hash(key))), self.children.len())]
    }
}

/// Jump consistent hash: the bucket in 0..n of `key`.
pub fn jump(mut key: u64, n: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < n as i64 {
        b = j;
        key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_reaches_the_same_child_and_keys_spread() {
        let children: Vec<Target> = (0..3).map(Target::Pool).collect();
        let r = HashRoute::new(&children, HashKind::Fnv1a_64);
        let mut seen = [0usize; 3];
        for i in 0..300 {
            let key = format!("key:{i}");
            let t = r.choose(key.as_bytes());
            assert_eq!(t, r.choose(key.as_bytes()));
            let Target::Pool(p) = t else { unreachable!() };
            seen[p] += 1;
        }
        assert!(seen.iter().all(|&n| n > 70), "{seen:?}");
    }

    #[test]
    fn adding_a_child_moves_only_the_keys_it_takes() {
        let moved = (0..1000u64).filter(|&k| jump(crate::routes::mix(k), 4) != jump(crate::routes::mix(k), 5)).count();
        assert!((120..280).contains(&moved), "about a fifth should move: {moved}");
        for k in 0..1000u64 {
            let (before, after) = (jump(crate::routes::mix(k), 4), jump(crate::routes::mix(k), 5));
            assert!(before == after || after == 4, "a key only ever moves to the new child");
        }
    }
}
