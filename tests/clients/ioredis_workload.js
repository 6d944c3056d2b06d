// ioredis (Node) through ferrule: get/set, mget/mset across servers, a pipeline, hashes, a transaction with hash
// tags, a blocking pop fed by a producer, pub/sub (a channel and a pattern, published from another connection), a
// full SCAN stream, scripts, CLIENT SETNAME/GETNAME. Usage: node ioredis_workload.js PORT [USER PASSWORD]; the same
// script runs straight to one redis (no user). Prints "ok" and exits 0 on success; any failure exits non-zero with
// the reason.
const Redis = require("ioredis");
const assert = require("assert");

async function main() {
  const [port, username, password] = process.argv.slice(2);
  const options = { port: Number(port), host: "127.0.0.1", username: username || undefined,
    password: password || undefined, connectionName: "ioredis-test", maxRetriesPerRequest: 0,
    enableOfflineQueue: true, retryStrategy: () => null };
  const redis = new Redis(options);
  assert.strictEqual(await redis.client("GETNAME"), "ioredis-test");
  assert.strictEqual(await redis.set("node:greeting", "hello"), "OK");
  assert.strictEqual(await redis.get("node:greeting"), "hello");
  assert.strictEqual(await redis.get("node:absent"), null);

  const keys = Array.from({ length: 40 }, (_, i) => `node:k${i}`);
  await redis.mset(...keys.flatMap((k) => [k, `v-${k}`]));
  const values = await redis.mget(...keys, "node:absent");
  assert.strictEqual(values.length, 41);
  assert.strictEqual(values[3], "v-node:k3");
  assert.strictEqual(values[40], null);

  const pipe = redis.pipeline();
  for (let i = 0; i < 100; i++) pipe.incr(`node:counter${i % 10}`);
  const results = await pipe.exec();
  assert.strictEqual(results.length, 100);
  assert.deepStrictEqual(results[99], [null, 10]);

  const seen = new Set();
  await new Promise((resolve, reject) => {
    const stream = redis.scanStream({ match: "node:*", count: 15 });
    stream.on("data", (batch) => batch.forEach((k) => seen.add(k)));
    stream.on("end", resolve);
    stream.on("error", reject);
  });
  for (const k of [...keys, "node:greeting"]) assert.ok(seen.has(k), `SCAN missed ${k}`);

  assert.strictEqual(await redis.hset("node:h", "a", "1", "b", "2"), 2);
  assert.deepStrictEqual(await redis.hgetall("node:h"), { a: "1", b: "2" });
  assert.strictEqual(await redis.hincrby("node:h", "a", 4), 5);

  // A transaction whose keys share a hash tag.
  const tx = await redis.multi().set("{node:acct}:a", 10).incrby("{node:acct}:b", 5).decrby("{node:acct}:a", 3)
    .get("{node:acct}:a").exec();
  assert.deepStrictEqual(tx, [[null, "OK"], [null, 5], [null, 7], [null, "7"]]);

  // A blocking pop fed by a producer on another connection.
  const producer = new Redis(options);
  setTimeout(() => producer.rpush("node:jobs", "job-1"), 200);
  assert.deepStrictEqual(await redis.blpop("node:jobs", 10), ["node:jobs", "job-1"]);

  // Pub/sub: a subscriber connection, a channel and a pattern, messages published from another connection.
  const sub = new Redis(options);
  const got = [];
  const both = new Promise((resolve) => {
    sub.on("message", (channel, message) => { got.push(`message ${channel} ${message}`); if (got.length === 2) resolve(); });
    sub.on("pmessage", (pattern, channel, message) => {
      got.push(`pmessage ${pattern} ${channel} ${message}`);
      if (got.length === 2) resolve();
    });
  });
  assert.strictEqual(await sub.subscribe("node:news"), 1);
  assert.strictEqual(await sub.psubscribe("node:ev:*"), 2);
  assert.strictEqual(await producer.publish("node:news", "hello"), 1);
  assert.strictEqual(await producer.publish("node:ev:1", "x"), 1);
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`messages: ${got}`)), 10000); });
  await Promise.race([both, late]);
  clearTimeout(timer);
  assert.deepStrictEqual(got.sort(), ["message node:news hello", "pmessage node:ev:* node:ev:1 x"]);
  await sub.quit();
  await producer.quit();

  redis.defineCommand("bump", { numberOfKeys: 1, lua: "return redis.call('INCRBY', KEYS[1], ARGV[1])" });
  for (const k of keys) assert.strictEqual(await redis.bump(`node:s:${k}`, 3), 3);
  const sha = await redis.script("LOAD", "return 7");
  assert.deepStrictEqual(await redis.script("EXISTS", sha), [1]);
  assert.strictEqual(await redis.evalsha(sha, 1, "node:any"), 7);
  assert.ok((await redis.dbsize()) >= 91);
  assert.strictEqual(await redis.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "node:e", 2), 2);
  await redis.quit();
  console.log("ok");
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
