//! The memcached text-protocol commands ferrule understands.

/// A memcached ASCII command, text or meta (mg, ms, md, ma, mn, me: see [`super::meta`]). Names are matched case-sensitively (memcached answers `GET` with
/// `ERROR`), so only the lowercase spellings in [`Command::name`] are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Incr,
    Decr,
    Delete,
    Touch,
    Version,
    Quit,
    Stats,
    FlushAll,
    Verbosity,
    /// `mg`: meta get.
    MetaGet,
    /// `ms`: meta set (its `M` flag picks set, add, append, prepend or replace).
    MetaSet,
    /// `md`: meta delete.
    MetaDelete,
    /// `ma`: meta arithmetic (incr or decr, by its `M` flag).
    MetaArithmetic,
    /// `mn`: meta no-op, answered `MN` by ferrule itself after every earlier reply.
    MetaNoop,
    /// `me`: meta debug, forwarded to the key's server.
    MetaDebug,
}

impl Command {
    /// Every command, in declaration order (handy for tables and tests).
    pub const ALL: [Command; 25] = [
        Command::Get,
        Command::Gets,
        Command::Gat,
        Command::Gats,
        Command::Set,
        Command::Add,
        Command::Replace,
        Command::Append,
        Command::Prepend,
        Command::Cas,
        Command::Incr,
        Command::Decr,
        Command::Delete,
        Command::Touch,
        Command::Version,
        Command::Quit,
        Command::Stats,
        Command::FlushAll,
        Command::Verbosity,
        Command::MetaGet,
        Command::MetaSet,
        Command::MetaDelete,
        Command::MetaArithmetic,
        Command::MetaNoop,
        Command::MetaDebug,
    ];

    /// The command as it is spelled on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Command::Get => "get",
            Command::Gets => "gets",
            Command::Gat => "gat",
            Command::Gats => "gats",
            Command::Set => "set",
            Command::Add => "add",
            Command::Replace => "replace",
            Command::Append => "append",
            Command::Prepend => "prepend",
            Command::Cas => "cas",
            Command::Incr => "incr",
            Command::Decr => "decr",
            Command::Delete => "delete",
            Command::Touch => "touch",
            Command::Version => "version",
            Command::Quit => "quit",
            Command::Stats => "stats",
            Command::FlushAll => "flush_all",
            Command::Verbosity => "verbosity",
            Command::MetaGet => "mg",
            Command::MetaSet => "ms",
            Command::MetaDelete => "md",
            Command::MetaArithmetic => "ma",
            Command::MetaNoop => "mn",
            Command::MetaDebug => "me",
        }
    }

    /// The command whose wire name is exactly `name`, if any.
    pub fn from_name(name: &[u8]) -> Option<Command> {
        Some(match name {
            b"get" => Command::Get,
            b"gets" => Command::Gets,
            b"gat" => Command::Gat,
            b"gats" => Command::Gats,
            b"set" => Command::Set,
            b"add" => Command::Add,
            b"replace" => Command::Replace,
            b"append" => Command::Append,
            b"prepend" => Command::Prepend,
            b"cas" => Command::Cas,
            b"incr" => Command::Incr,
            b"decr" => Command::Decr,
            b"delete" => Command::Delete,
            b"touch" => Command::Touch,
            b"version" => Command::Version,
            b"quit" => Command::Quit,
            b"stats" => Command::Stats,
            b"flush_all" => Command::FlushAll,
            b"verbosity" => Command::Verbosity,
            b"mg" => Command::MetaGet,
            b"ms" => Command::MetaSet,
            b"md" => Command::MetaDelete,
            b"ma" => Command::MetaArithmetic,
            b"mn" => Command::MetaNoop,
            b"me" => Command::MetaDebug,
            _ => return None,
        })
    }

    /// get, gets, gat, gats: multi-key commands answered with VALUE items and END.
    pub fn is_retrieval(self) -> bool {
        matches!(self, Command::Get | Command::Gets | Command::Gat | Command::Gats)
    }

    /// mg, ms, md, ma, mn, me: the meta protocol.
    pub fn is_meta(self) -> bool {
        matches!(
            self,
            Command::MetaGet
                | Command::MetaSet
                | Command::MetaDelete
                | Command::MetaArithmetic
                | Command::MetaNoop
                | Command::MetaDebug
        )
    }

    /// set, add, replace, append, prepend, cas: the commands followed by a data block.
    pub fn is_storage(self) -> bool {
        matches!(
            self,
            Command::Set | Command::Add | Command::Replace | Command::Append | Command::Prepend | Command::Cas
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for command in Command::ALL {
            assert_eq!(Command::from_name(command.name().as_bytes()), Some(command));
        }
    }

    #[test]
    fn names_are_case_sensitive_and_exact() {
        for name in [&b"GET"[..], b"Get", b"get ", b"", b"MG", b"mgg", b"flush-all", b"getss"] {
            assert_eq!(Command::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn classes() {
        let retrieval: Vec<_> = Command::ALL.into_iter().filter(|c| c.is_retrieval()).collect();
        assert_eq!(retrieval, [Command::Get, Command::Gets, Command::Gat, Command::Gats]);
        let storage: Vec<_> = Command::ALL.into_iter().filter(|c| c.is_storage()).collect();
        assert_eq!(
            storage,
            [Command::Set, Command::Add, Command::Replace, Command::Append, Command::Prepend, Command::Cas]
        );
        let meta: Vec<_> = Command::ALL.into_iter().filter(|c| c.is_meta()).map(Command::name).collect();
        assert_eq!(meta, ["mg", "ms", "md", "ma", "mn", "me"]);
    }
}
