// Makes real BullMQ queue state with the real `bullmq` package, then prints what BullMQ's own
// getJobCounts() says, so broker-ops' read-only counts can be compared with it.
// Usage: node bullmq-state.js REDIS_URL PREFIX QUEUE [pause|empty|failed]   (prints one JSON line)
// `empty`: a queue that exists (BullMQ's own keys) with no job in it, as a worker's idle queue.
// `failed`: seven jobs fail (one after two attempts), then what getFailed(0, 4) returns.
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
  if (pause === 'failed') {
    const worker = new Worker(name, null, { connection, prefix, autorun: false });
    const token = 'broker-ops-test';
    await queue.add('message_created', { retried: true }, { attempts: 2 });
    for (let i = 0; i < 6; i++) await queue.add('message_created', { i });
    for (let i = 0; i < 8; i++) {
      const job = await worker.getNextJob(token);
      if (!job) break;
      await job.moveToFailed(new Error(`Chatwoot API answered 50${i % 4} (attempt ${job.attemptsMade + 1})`), token, false);
      await new Promise((r) => setTimeout(r, 3)); // distinct finishedOn scores
    }
    await worker.close();
    const jobs = (await queue.getFailed(0, 4)).map((j) => ({
      id: j.id, name: j.name, failed_reason: j.failedReason, attempts_made: j.attemptsMade,
      finished_on: j.finishedOn, timestamp: j.timestamp, data: JSON.stringify(j.data),
    }));
    process.stdout.write(JSON.stringify({ jobs, failed: (await queue.getJobCounts('failed')).failed }) + '\n');
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
