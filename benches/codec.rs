//! Micro-benchmarks of the pure request-path pieces: parsing, reply framing, hashing, ring lookup.
//! Run with `cargo bench --bench codec`. These are for profiling changes, not for claims about the proxy's speed
//! (those come from scripts/bench.sh, side by side with twemproxy).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferrule::hash::{locate_key, DistributionKind, HashKind, Ring, RingMember};
use ferrule::protocol::{memcache, redis};

fn redis_parse(c: &mut Criterion) {
    let mut buf = Vec::new();
    for i in 0..100 {
        let k = format!("key:{i}");
        redis::write_command(&mut buf, &[b"SET", k.as_bytes(), b"some-value-of-moderate-size"]);
        redis::write_command(&mut buf, &[b"GET", k.as_bytes()]);
    }
    let mut g = c.benchmark_group("redis");
    g.throughput(Throughput::Elements(200));
    g.bench_function("parse 200 pipelined requests", |b| {
        let mut args = Vec::new();
        b.iter(|| {
            let mut at = 0;
            while let Ok(Some(n)) = redis::parse_request(&buf[at..], &mut args) {
                black_box(redis::lookup(&buf[at + args[0].start..at + args[0].end]));
                at += n;
            }
        })
    });
    let mut replies = Vec::new();
    for _ in 0..200 {
        redis::write_bulk(&mut replies, b"some-value-of-moderate-size");
    }
    g.bench_function("frame 200 bulk replies", |b| {
        b.iter(|| {
            let mut at = 0;
            while let Ok(Some(n)) = redis::reply_len(&replies[at..]) {
                at += n;
            }
            black_box(at)
        })
    });
    g.finish();
}

fn redis_lookup(c: &mut Criterion) {
    // The names clients send most, in the cases they send them, plus a long name and an unknown one: the table
    // lookup runs once per request, so this is its whole cost on the request path.
    let names: [&[u8]; 12] = [
        b"GET",
        b"SET",
        b"get",
        b"set",
        b"MGET",
        b"mset",
        b"DEL",
        b"INCR",
        b"hget",
        b"EXPIRE",
        b"ZRANGEBYSCORE",
        b"NOSUCH",
    ];
    let mut g = c.benchmark_group("redis");
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("lookup 12 command names", |b| {
        b.iter(|| {
            for name in names {
                black_box(redis::lookup(black_box(name)));
            }
        })
    });
    g.finish();
}

fn memcache_parse(c: &mut Criterion) {
    let mut buf = Vec::new();
    for i in 0..100 {
        let k = format!("key:{i}");
        memcache::write_storage(&mut buf, memcache::Command::Set, k.as_bytes(), 0, 0, b"value", None, false);
        buf.extend_from_slice(format!("get {k}\r\n").as_bytes());
    }
    let mut g = c.benchmark_group("memcache");
    g.throughput(Throughput::Elements(200));
    g.bench_function("parse 200 pipelined requests", |b| {
        let mut keys = Vec::new();
        b.iter(|| {
            let mut at = 0;
            while let memcache::Parse::Request(r) = memcache::parse_request(&buf[at..], &mut keys, 1 << 20) {
                at += r.len;
            }
            black_box(at)
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let idents: Vec<String> = (0..8).map(|i| format!("10.0.0.{i}:6379")).collect();
    let members: Vec<RingMember<'_>> = idents.iter().map(|s| RingMember { ident: s, weight: 1, live: true }).collect();
    let ring = Ring::build(DistributionKind::Ketama, &members);
    let mut g = c.benchmark_group("hash");
    for kind in [HashKind::Fnv1a_64, HashKind::Md5, HashKind::Murmur, HashKind::Xxh3] {
        g.bench_function(format!("{} + ketama lookup", kind.name()), |b| {
            b.iter(|| locate_key(&ring, kind, None, black_box(b"user:12345:profile")))
        });
    }
    g.finish();
}

criterion_group!(benches, redis_parse, redis_lookup, memcache_parse, hashing);
criterion_main!(benches);
