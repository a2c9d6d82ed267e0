// The peer side of scripts/bench/tokens.py: verifies resume tokens with the real jsonwebtoken or
// jose (installed in tests/interop), exactly as the web app would (HS256, issuer, audience).
//   node verify-peer.js one LIB TOKEN          one token, one process (startup included)
//   node verify-peer.js batch LIB FILE         every line of FILE, prints tokens/s
const path = require('path');
const fs = require('fs');
const mod = (name) => require(path.join(__dirname, '..', '..', 'tests', 'interop', 'node_modules', name));
const secret = process.env.RESUME_TOKEN_SECRET;
const opts = { algorithms: ['HS256'], issuer: 'ai-broker', audience: 'chat-resume', clockTolerance: 30 };

async function main() {
  const [mode, lib, arg] = process.argv.slice(2);
  const jwt = mod('jsonwebtoken');
  const jose = lib === 'jose' ? mod('jose') : null;
  const key = new TextEncoder().encode(secret);
  const check = lib === 'jose'
    ? async (t) => { try { await jose.jwtVerify(t, key, opts); return true; } catch { return false; } }
    : async (t) => { try { jwt.verify(t, secret, opts); return true; } catch { return false; } };
  if (mode === 'one') {
    const ok = await check(arg);
    process.exit(ok ? 0 : 1);
  }
  const lines = fs.readFileSync(arg, 'utf8').split('\n').filter(Boolean);
  const t0 = process.hrtime.bigint();
  let valid = 0;
  for (const t of lines) if (await check(t)) valid++;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ lib, tokens: lines.length, valid, seconds: secs, per_second: lines.length / secs }));
}
main();
