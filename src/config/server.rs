//! Server lines as twemproxy writes them: `host:port:weight [name]`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use super::ServerConfig;

const EXPECTED_FORM: &str =
    "expected \"host:port:weight [name]\", e.g. \"10.0.0.1:6379:1\" or \"[::1]:6379:1 shard-a\"";

/// The parts of a server line, before the host is resolved.
#[derive(Debug, PartialEq, Eq)]
struct ServerSpec<'a> {
    host: &'a str,
    port: u16,
    weight: u32,
    name: Option<&'a str>,
}

/// Parses and resolves one server line. IPv6 hosts are written in brackets.
pub(super) fn parse_server(spec: &str) -> Result<ServerConfig, String> {
    let parsed = split_spec(spec)?;
    let addr = resolve(parsed.host, parsed.port)?;
    // A bracket-less IPv6 ident would read as "::1:6379", which is ambiguous.
    let ident_host = match addr.ip() {
        IpAddr::V6(_) if parsed.host.contains(':') => format!("[{}]", parsed.host),
        _ => parsed.host.to_owned(),
    };
    Ok(ServerConfig {
        host: parsed.host.to_owned(),
        port: parsed.port,
        addr,
        weight: parsed.weight,
        name: parsed.name.map(str::to_owned),
        ident: crate::hash::ketama_ident(&ident_host, parsed.port, parsed.name),
        spec: spec.trim().to_owned(),
    })
}

/// Parses a seed node of a `redis_cluster` pool: `host:port [name]`, or a server line with weight 1
/// (`host:port:1`), so that a twemproxy-style list works too. The weight defaults to 1.
pub(super) fn parse_seed(spec: &str) -> Result<ServerConfig, String> {
    let mut words = spec.split_whitespace();
    let address = words.next().unwrap_or("");
    let after_host = match address.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => address.split_once(':').map_or("", |(_, after)| after),
    };
    let has_weight = after_host.trim_start_matches(':').contains(':');
    if has_weight || address.is_empty() {
        return parse_server(spec);
    }
    let rest: Vec<&str> = words.collect();
    let line = if rest.is_empty() { format!("{address}:1") } else { format!("{address}:1 {}", rest.join(" ")) };
    let mut server = parse_server(&line).map_err(|e| e.replace(EXPECTED_FORM, SEED_FORM))?;
    server.spec = spec.trim().to_owned();
    Ok(server)
}

const SEED_FORM: &str = "expected \"host:port [name]\", e.g. \"10.0.0.1:7000\"";

/// Checks the form of a server line without resolving its host (for the config importers, which do no I/O).
pub(super) fn check_server_spec(spec: &str) -> Result<(), String> {
    split_spec(spec).map(|_| ())
}

fn split_spec(spec: &str) -> Result<ServerSpec<'_>, String> {
    let mut words = spec.split_whitespace();
    let address = words.next().ok_or_else(|| format!("empty server; {EXPECTED_FORM}"))?;
    let name = words.next();
    if let Some(extra) = words.next() {
        return Err(format!("unexpected {extra:?} after the server name; {EXPECTED_FORM}"));
    }
    let (host, port_and_weight) = split_host(address)?;
    let (port, weight) =
        port_and_weight.split_once(':').ok_or_else(|| format!("{address:?} has no weight; {EXPECTED_FORM}"))?;
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{port:?} is not a port from 1 to 65535")),
        Ok(port) => port,
    };
    let weight = match weight.parse::<u32>() {
        Ok(0) | Err(_) => return Err(format!("weight {weight:?} is not a whole number of at least 1")),
        Ok(weight) => weight,
    };
    Ok(ServerSpec { host, port, weight, name })
}

/// Splits `host:rest` or `[ipv6]:rest` into the host and the text after its colon.
fn split_host(address: &str) -> Result<(&str, &str), String> {
    if let Some(bracketed) = address.strip_prefix('[') {
        let (host, rest) =
            bracketed.split_once(']').ok_or_else(|| format!("{address:?} has no closing ']'; {EXPECTED_FORM}"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address; only IPv6 addresses go in brackets"));
        }
        let rest = rest.strip_prefix(':').ok_or_else(|| format!("{address:?} needs ':port:weight' after ']'"))?;
        return Ok((host, rest));
    }
    let (host, rest) = address.split_once(':').ok_or_else(|| format!("{address:?} has no port; {EXPECTED_FORM}"))?;
    if rest.matches(':').count() > 1 {
        return Err(format!("{address:?} has too many ':'; write IPv6 addresses in brackets, e.g. \"[::1]:6379:1\""));
    }
    if host.is_empty() {
        return Err(format!("{address:?} has no host; {EXPECTED_FORM}"));
    }
    Ok((host, rest))
}

/// IP literals and `localhost` need no lookup; other names are resolved once, here, to their
/// first address (IPv4 preferred, as most cache fleets are IPv4).
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host == "localhost" {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    // The config fuzz target (fuzz/) names hosts at random; it must not send DNS queries.
    if cfg!(fuzzing) {
        return Err(format!("cannot resolve host {host:?}: a fuzzing build resolves no names"));
    }
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|err| format!("cannot resolve host {host:?}: {err}"))?.collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("host {host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_named_and_ipv6_specs() {
        assert_eq!(
            split_spec("127.0.0.1:6379:2"),
            Ok(ServerSpec { host: "127.0.0.1", port: 6379, weight: 2, name: None })
        );
        assert_eq!(
            split_spec("  cache-1.example:11211:1   shard-a "),
            Ok(ServerSpec { host: "cache-1.example", port: 11211, weight: 1, name: Some("shard-a") })
        );
        assert_eq!(
            split_spec("[::1]:6379:1 s6"),
            Ok(ServerSpec { host: "::1", port: 6379, weight: 1, name: Some("s6") })
        );
    }

    #[test]
    fn rejects_malformed_specs() {
        for (spec, why) in [
            ("", "empty server"),
            ("127.0.0.1", "no port"),
            ("127.0.0.1:6379", "no weight"),
            (":6379:1", "no host"),
            ("127.0.0.1:0:1", "not a port"),
            ("127.0.0.1:70000:1", "not a port"),
            ("127.0.0.1:6379:0", "weight \"0\""),
            ("127.0.0.1:6379:x", "weight \"x\""),
            ("127.0.0.1:6379:1 a b", "unexpected \"b\""),
            ("::1:6379:1", "brackets"),
            ("[::1:6379:1", "closing ']'"),
            ("[::1]6379:1", "after ']'"),
        ] {
            let err = split_spec(spec).expect_err(spec);
            assert!(err.contains(why), "{spec:?}: {err}");
        }
    }

    #[test]
    fn ident_follows_ketama_rules() {
        let named = parse_server("127.0.0.1:6379:1 a").unwrap();
        assert_eq!(named.ident, "a");
        let plain = parse_server("127.0.0.1:6379:1").unwrap();
        assert_eq!(plain.ident, "127.0.0.1:6379");
        let memcached = parse_server("127.0.0.1:11211:1").unwrap();
        assert_eq!(memcached.ident, "127.0.0.1");
        let v6 = parse_server("[::1]:6379:3").unwrap();
        assert_eq!(v6.ident, "[::1]:6379");
        assert_eq!(v6.addr, "[::1]:6379".parse().unwrap());
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.weight, 3);
        assert_eq!(v6.spec, "[::1]:6379:3");
    }

    #[test]
    fn localhost_resolves_without_lookup() {
        let server = parse_server("localhost:6379:1").unwrap();
        assert_eq!(server.addr, "127.0.0.1:6379".parse().unwrap());
        assert_eq!(server.ident, "localhost:6379");
    }

    #[test]
    fn bracketed_non_ipv6_is_rejected() {
        let seed = parse_seed("127.0.0.1:7000").unwrap();
        assert_eq!((seed.port, seed.weight, seed.spec.as_str()), (7000, 1, "127.0.0.1:7000"));
        let seed = parse_seed("[::1]:7001 a").unwrap();
        assert_eq!((seed.port, seed.weight, seed.name.as_deref()), (7001, 1, Some("a")));
        assert_eq!(parse_seed("127.0.0.1:7000:1").unwrap().weight, 1);
        assert!(parse_seed("127.0.0.1").is_err());
        let err = parse_server("[cache]:6379:1").unwrap_err();
        assert!(err.contains("not an IPv6 address"), "{err}");
    }
}
