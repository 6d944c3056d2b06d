//! The config parser on arbitrary text: it must never panic, must explain every refusal, and every config it
//! accepts must hold together and survive the round trip through GET /config (`to_redacted_toml`), which
//! promises to parse back to the same config, secrets aside.
//!
//! Built with `--cfg fuzzing`, ferrule resolves no host names (a fuzzed config names hosts at random, and the
//! fuzzer must not send DNS queries), so only IP literals and `localhost` are accepted as servers.

use ferrule::config::{Config, REDACTED};

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(error) => {
            assert!(!error.message().trim().is_empty(), "a refusal without a reason: {error:?}");
            assert!(error.line().is_none_or(|line| line >= 1 && line <= text.split('\n').count()));
            return;
        }
    };
    for listener in &config.listeners {
        if let Some(index) = listener.pool() {
            let pool = config.pools.get(index).expect("listener routes to a pool");
            assert_eq!(pool.name, listener.route);
        }
        for index in config.pools_reached(listener.target) {
            let pool = config.pools.get(index).expect("a route reaches a pool that exists");
            assert_eq!(
                pool.protocol, listener.protocol,
                "listener {} reaches a pool of another protocol",
                listener.name
            );
        }
    }
    for pool in &config.pools {
        assert!(!pool.servers.is_empty(), "pool {} has no servers", pool.name);
        assert!(pool.server_connections >= 1);
    }
    let _ = config.warnings();

    let redacted = config.to_redacted_toml();
    let reparsed = Config::parse(&redacted)
        .unwrap_or_else(|error| panic!("GET /config output does not parse back: {error}\n{redacted}"));
    let mut expected = config;
    for listener in &mut expected.listeners {
        listener.auth = listener.auth.as_ref().map(|_| REDACTED.to_owned());
    }
    for pool in &mut expected.pools {
        pool.redis_auth = pool.redis_auth.as_ref().map(|_| REDACTED.to_owned());
    }
    assert_eq!(reparsed, expected, "GET /config output parses back to another config:\n{redacted}");
}
