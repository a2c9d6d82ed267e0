// Makes real BullMQ queue state with the real `bullmq` package, then prints what BullMQ's own
// getJobCounts() says, so broker-ops' read-only counts can be compared with it.
// Usage: node bullmq-state.js REDIS_URL PREFIX QUEUE [pause|empty]   (prints one JSON line)
// `empty`: a queue that exists (BullMQ's own keys) with no job in it, as a worker's idle queue.
const { Queue, Worker } = require('bullmq');

async function main() {
  const [redisUrl, prefix, name, pause] = process.argv.slice(2);
  const u = new URL(redisUrl);
  const connection = { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null };
  const queue = new Queue(name, { connection, prefix });
  if (pause === 'empty') {
    const job = await queue.add('message_created', {});
    await job.remove();
    process.stdout.write(JSON.stringify(await queue.getJobCounts()) + '\n');
    await queue.close();
    return;
  }
  // 5 waiting, 2 prioritized, 3 delayed (1 already due: no worker promotes it), 1 failed, 1 active.
  for (let i = 0; i < 5; i++) await queue.add('message_created', { i });
  await queue.add('message_created', { p: 1 }, { priority: 1 });
  await queue.add('message_created', { p: 2 }, { priority: 5 });
  await queue.add('message_created', { d: 1 }, { delay: 60000 });
  await queue.add('message_created', { d: 2 }, { delay: 120000 });
  await queue.add('message_created', { d: 3 }, { delay: 50 });
  const worker = new Worker(name, null, { connection, prefix, autorun: false });
  const token = 'broker-ops-test';
  const failing = await worker.getNextJob(token);
  await failing.moveToFailed(new Error('AI provider error'), token, false);
  await worker.getNextJob(token); // stays active: never completed
  await worker.close();
  await new Promise((r) => setTimeout(r, 200)); // the 50 ms delayed job is now overdue
  if (pause === 'pause') await queue.pause();
  const counts = await queue.getJobCounts();
  await queue.close();
  process.stdout.write(JSON.stringify(counts) + '\n');
}

main().catch((e) => { console.error(e); process.exit(2); });
