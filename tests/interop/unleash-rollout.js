// Evaluates one flag for many conversation ids with unleash-client's own evaluation path (its
// Client and built-in strategies; no server, no network). stdin: JSON {toggle, ids}; stdout: a
// JSON array of booleans, one per id, in order. Used by the rollout tests to check that
// broker-ops buckets conversations exactly as the web app's Unleash SDK would.
const Client = require('unleash-client/lib/client').default;
const { defaultStrategies } = require('unleash-client/lib/strategy');

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const { toggle, ids } = JSON.parse(input);
  const repository = {
    getToggle: (name) => (name === toggle.name ? toggle : undefined),
    getSegment: () => undefined,
  };
  const client = new Client(repository, defaultStrategies);
  const out = ids.map((id) => client.isEnabled(toggle.name, { properties: { conversationId: id } }, () => false));
  process.stdout.write(JSON.stringify(out));
});
