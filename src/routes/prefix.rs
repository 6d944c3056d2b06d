//! `prefix`: mcrouter's PrefixSelectorRoute, Envoy's redis `prefix_routes`.
//!
//! The longest prefix of the key found in `prefixes` selects the child; a key matching none goes to `default`
//! (without a default it gets an error reply naming the route). With `case_insensitive`, prefixes match regardless
//! of ASCII case. With `strip_prefix` (redis listeners), the matched prefix is removed from the key before the
//! request goes on, so `user:42` routed by `user:` is stored as `42`; the child routes on the stripped key.

use crate::config::{Dest, Target};

pub struct Prefix {
    /// Longest first, so the first match is the longest.
    table: Vec<(Vec<u8>, Target)>,
    default: Option<Target>,
    strip: bool,
    case_insensitive: bool,
}

impl Prefix {
    pub fn new(prefixes: &[(String, Dest)], default: Option<&Dest>, strip: bool, case_insensitive: bool) -> Prefix {
        let mut table: Vec<(Vec<u8>, Target)> =
            prefixes.iter().map(|(p, d)| (p.as_bytes().to_vec(), d.target)).collect();
        table.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Prefix { table, default: default.map(|d| d.target), strip, case_insensitive }
    }

    /// The child for `key` and how many bytes of the key to strip; `None` when nothing matches and there is no
    /// default.
    pub fn choose(&self, key: &[u8]) -> Option<(Target, usize)> {
        let matches = |p: &[u8]| {
            key.len() >= p.len()
                && if self.case_insensitive { key[..p.len()].eq_ignore_ascii_case(p) } else { key.starts_with(p) }
        };
        match self.table.iter().find(|(p, _)| matches(p)) {
            Some((p, t)) => Some((*t, if self.strip { p.len() } else { 0 })),
            None => self.default.map(|t| (t, 0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(pool: usize) -> Dest {
        Dest { name: format!("p{pool}"), target: Target::Pool(pool) }
    }

    fn route(strip: bool, ci: bool, default: Option<usize>) -> Prefix {
        let prefixes =
            vec![("user:".to_owned(), dest(1)), ("user:vip:".to_owned(), dest(2)), ("s".to_owned(), dest(3))];
        Prefix::new(&prefixes, default.map(dest).as_ref(), strip, ci)
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let r = route(false, false, Some(0));
        assert_eq!(r.choose(b"user:vip:7"), Some((Target::Pool(2), 0)));
        assert_eq!(r.choose(b"user:7"), Some((Target::Pool(1), 0)));
        assert_eq!(r.choose(b"session:1"), Some((Target::Pool(3), 0)));
    }

    #[test]
    fn unmatched_keys_go_to_the_default_or_nowhere() {
        assert_eq!(route(false, false, Some(0)).choose(b"other"), Some((Target::Pool(0), 0)));
        assert_eq!(route(false, false, Some(0)).choose(b"use"), Some((Target::Pool(0), 0)), "shorter than the prefix");
        assert_eq!(route(false, false, None).choose(b"other"), None);
    }

    #[test]
    fn matching_is_case_sensitive_unless_asked() {
        assert_eq!(route(false, false, Some(0)).choose(b"USER:1"), Some((Target::Pool(0), 0)));
        assert_eq!(route(false, true, Some(0)).choose(b"USER:1"), Some((Target::Pool(1), 0)));
    }

    #[test]
    fn strip_prefix_removes_the_matched_prefix_only() {
        let r = route(true, false, Some(0));
        assert_eq!(r.choose(b"user:vip:7"), Some((Target::Pool(2), 9)));
        assert_eq!(r.choose(b"other"), Some((Target::Pool(0), 0)), "the default strips nothing");
    }
}
