const test = require('node:test');
const assert = require('node:assert/strict');
const { lines, cheapest } = require('./cart.js');

const items = [
  { sku: 'a', qty: 1, price: 3 },
  { sku: 'b', qty: 2, price: 1 },
  { sku: 'a', qty: 4, price: 3 },
];

test('groups lines by sku', () => assert.deepEqual(lines(items), [{ sku: 'a', qty: 5 }, { sku: 'b', qty: 2 }]));
test('finds the cheapest item', () => assert.equal(cheapest(items).sku, 'b'));
test('no lines for no items', () => assert.deepEqual(lines([]), []));
