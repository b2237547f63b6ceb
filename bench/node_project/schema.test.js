const test = require('node:test');
const assert = require('node:assert/strict');
const { check } = require('./schema.js');

test('accepts a valid order', () => assert.deepEqual(check({ id: 'x1', qty: 2 }), []));
test('refuses a zero quantity', () => assert.equal(check({ id: 'x1', qty: 0 }).length, 1));
test('refuses unknown fields', () => assert.equal(check({ id: 'x1', qty: 1, colour: 'red' }).length, 1));
test('reports every problem', () => assert.equal(check({ qty: 'many' }).length, 2));
