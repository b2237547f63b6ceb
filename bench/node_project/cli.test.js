const test = require('node:test');
const assert = require('node:assert/strict');
const { parse } = require('./cli.js');

test('reads a quantity', () => assert.equal(parse(['--qty', '3']).qty, 3));
test('defaults the quantity to one', () => assert.equal(parse([]).qty, 1));
test('reads a flag', () => assert.equal(parse(['--express']).express, true));
test('refuses an unknown option', () => assert.throws(() => parse(['--colour', 'red']), /Unknown argument/));
