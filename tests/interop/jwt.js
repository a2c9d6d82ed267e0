// Interop peer for broker-ops' resume tokens: signs and verifies with the real `jsonwebtoken`
// and `jose` packages. Reads one JSON request on stdin, writes one JSON answer on stdout.
//   {"op":"sign","lib":"jsonwebtoken"|"jose","secret":"...","kid":"k1","claims":{...},"alg":"HS256","noTimestamp":false}
//   {"op":"verify","lib":"jsonwebtoken"|"jose","secret":"...","token":"...","issuer":"...","audience":"..."}
// Verification asks for HS256 only, the issuer and the audience, as the web app does.
const jwt = require('jsonwebtoken');
const jose = require('jose');

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const req = JSON.parse(input);
  const key = new TextEncoder().encode(req.secret);
  if (req.op === 'sign' && req.lib === 'jsonwebtoken') {
    const header = req.kid ? { kid: req.kid } : undefined;
    // jsonwebtoken keeps a given iat (and adds one otherwise, unless noTimestamp).
    const options = { algorithm: req.alg || 'HS256', header, noTimestamp: !!req.noTimestamp };
    return { token: jwt.sign(req.claims, req.secret, options) };
  }
  if (req.op === 'sign' && req.lib === 'jose') {
    const header = { alg: req.alg || 'HS256', typ: 'JWT' };
    if (req.kid) header.kid = req.kid;
    return { token: await new jose.SignJWT(req.claims).setProtectedHeader(header).sign(key) };
  }
  if (req.op === 'verify' && req.lib === 'jsonwebtoken') {
    try {
      const claims = jwt.verify(req.token, req.secret, { algorithms: ['HS256'], issuer: req.issuer, audience: req.audience, clockTolerance: 30 });
      return { valid: true, claims };
    } catch (e) {
      return { valid: false, error: `${e.name}: ${e.message}` };
    }
  }
  if (req.op === 'verify' && req.lib === 'jose') {
    try {
      const { payload } = await jose.jwtVerify(req.token, key, { algorithms: ['HS256'], issuer: req.issuer, audience: req.audience, clockTolerance: 30 });
      return { valid: true, claims: payload };
    } catch (e) {
      return { valid: false, error: `${e.code || e.name}: ${e.message}` };
    }
  }
  throw new Error(`unknown request ${req.op}/${req.lib}`);
}

main().then((out) => process.stdout.write(JSON.stringify(out) + '\n'), (e) => { console.error(e); process.exit(2); });
