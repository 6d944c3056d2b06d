// ioredis (Node) through ferrule: get/set, mget/mset across servers, a pipeline, a full SCAN stream, a script by
// sha, CLIENT SETNAME/GETNAME. Usage: node ioredis_workload.js PORT USER PASSWORD. Prints "ok" and exits 0 on
// success; any failure exits non-zero with the reason.
const Redis = require("ioredis");
const assert = require("assert");

async function main() {
  const [port, username, password] = process.argv.slice(2);
  const redis = new Redis({ port: Number(port), host: "127.0.0.1", username, password, connectionName: "ioredis-test",
    maxRetriesPerRequest: 0, enableOfflineQueue: true, retryStrategy: () => null });
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

  redis.defineCommand("bump", { numberOfKeys: 1, lua: "return redis.call('INCRBY', KEYS[1], ARGV[1])" });
  for (const k of keys) assert.strictEqual(await redis.bump(`node:s:${k}`, 3), 3);
  const sha = await redis.script("LOAD", "return 7");
  assert.deepStrictEqual(await redis.script("EXISTS", sha), [1]);
  assert.strictEqual(await redis.evalsha(sha, 1, "node:any"), 7);
  assert.ok((await redis.dbsize()) >= 91);
  await redis.quit();
  console.log("ok");
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
