const test = require('node:test');
const assert = require('node:assert/strict');
const { makeApp } = require('./app.js');

async function withServer(fn) {
  const server = makeApp().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    return await fn(`http://127.0.0.1:${server.address().port}`);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

test('answers the health check', () =>
  withServer(async (base) => assert.deepEqual(await (await fetch(`${base}/health`)).json(), { ok: true })));

test('creates a valid order', () =>
  withServer(async (base) => {
    const res = await fetch(`${base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'x1', qty: 2 }),
    });
    assert.equal(res.status, 201);
  }));

test('refuses an invalid order', () =>
  withServer(async (base) => {
    const res = await fetch(`${base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: '', qty: 0 }),
    });
    assert.equal(res.status, 400);
  }));
