//! `operation`: mcrouter's OperationSelectorRoute, Envoy's `read_command_policy`.
//!
//! A child per operation, else `default` (without a default: an error reply naming the route). Operations are
//! memcache verbs (get, gets, gat, gats, set, add, replace, append, prepend, cas, incr, decr, delete, touch) or
//! redis command names, plus two classes valid for both protocols: `read` (redis: the commands the command table
//! flags read-only; memcache: the retrievals) and `write` (everything else that is routed). A named operation beats
//! its class.

use super::Op;
use crate::config::{Dest, Target};
use crate::protocol::memcache::Command;

pub struct Operation {
    /// Memcache verbs by [`Command`] position in [`Command::ALL`].
    memcache: [Option<Target>; Command::ALL.len()],
    /// Redis commands, uppercase, sorted for binary search.
    redis: Vec<(String, Target)>,
    read: Option<Target>,
    write: Option<Target>,
    default: Option<Target>,
}

impl Operation {
    pub fn new(operations: &[(String, Dest)], default: Option<&Dest>) -> Operation {
        let mut op = Operation {
            memcache: [None; Command::ALL.len()],
            redis: Vec::new(),
            read: None,
            write: None,
            default: default.map(|d| d.target),
        };
        for (name, dest) in operations {
            match name.as_str() {
                "read" => op.read = Some(dest.target),
                "write" => op.write = Some(dest.target),
                _ => {
                    if let Some(i) = Command::ALL.iter().position(|c| c.name() == name) {
                        op.memcache[i] = Some(dest.target);
                    }
                    if let Some(info) = crate::protocol::redis::lookup(name.as_bytes()) {
                        op.redis.push((info.name.to_owned(), dest.target));
                    }
                }
            }
        }
        op.redis.sort_by(|a, b| a.0.cmp(&b.0));
        op
    }

    /// The child for `op`, or `None` when nothing applies and there is no default.
    pub fn choose(&self, op: Op) -> Option<Target> {
        let named = match op {
            Op::Memcache(c) => Command::ALL.iter().position(|&x| x == c).and_then(|i| self.memcache[i]),
            Op::Redis(info) => {
                self.redis.binary_search_by(|(n, _)| n.as_str().cmp(info.name)).ok().map(|i| self.redis[i].1)
            }
        };
        named.or(if op.is_read() { self.read } else { self.write }).or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::redis::lookup;

    fn dest(pool: usize) -> Dest {
        Dest { name: format!("p{pool}"), target: Target::Pool(pool) }
    }

    #[test]
    fn memcache_verbs_select_their_child_else_the_default() {
        let ops = vec![("get".to_owned(), dest(1)), ("set".to_owned(), dest(2)), ("delete".to_owned(), dest(2))];
        let r = Operation::new(&ops, Some(&dest(0)));
        assert_eq!(r.choose(Op::Memcache(Command::Get)), Some(Target::Pool(1)));
        assert_eq!(r.choose(Op::Memcache(Command::Set)), Some(Target::Pool(2)));
        assert_eq!(r.choose(Op::Memcache(Command::Delete)), Some(Target::Pool(2)));
        assert_eq!(r.choose(Op::Memcache(Command::Gets)), Some(Target::Pool(0)), "gets is not get");
        assert_eq!(Operation::new(&ops, None).choose(Op::Memcache(Command::Incr)), None);
    }

    #[test]
    fn redis_classes_come_from_the_command_table_and_names_beat_classes() {
        let ops = vec![("read".to_owned(), dest(1)), ("write".to_owned(), dest(2)), ("hgetall".to_owned(), dest(3))];
        let r = Operation::new(&ops, None);
        let cmd = |n: &str| Op::Redis(lookup(n.as_bytes()).expect(n));
        assert_eq!(r.choose(cmd("GET")), Some(Target::Pool(1)));
        assert_eq!(r.choose(cmd("MGET")), Some(Target::Pool(1)));
        assert_eq!(r.choose(cmd("SET")), Some(Target::Pool(2)));
        assert_eq!(r.choose(cmd("DEL")), Some(Target::Pool(2)));
        assert_eq!(r.choose(cmd("HGETALL")), Some(Target::Pool(3)));
    }

    #[test]
    fn memcache_classes() {
        let ops = vec![("read".to_owned(), dest(1)), ("write".to_owned(), dest(2))];
        let r = Operation::new(&ops, None);
        assert_eq!(r.choose(Op::Memcache(Command::Gat)), Some(Target::Pool(1)));
        assert_eq!(r.choose(Op::Memcache(Command::Touch)), Some(Target::Pool(2)));
    }
}
