const test = require('node:test');
const assert = require('node:assert/strict');
const { add, total } = require('./calc.js');

test('adds two numbers', () => assert.equal(add(2, 3), 5));
test('adds zero', () => assert.equal(add(4, 0), 4));
test('totals a list', () => assert.equal(total([1, 2, 3, 4]), 10));
test('refuses strings', () => assert.throws(() => add('a', 1), TypeError));
