const Ajv = require('ajv');

const ajv = new Ajv({ allErrors: true });
const order = ajv.compile({
  type: 'object',
  properties: {
    id: { type: 'string', minLength: 1 },
    qty: { type: 'integer', minimum: 1 },
    note: { type: 'string' },
  },
  required: ['id', 'qty'],
  additionalProperties: false,
});

function check(o) {
  return order(o) ? [] : order.errors.map((e) => `${e.instancePath || '/'} ${e.message}`);
}

module.exports = { check };
