const _ = require('lodash');

function add(a, b) {
  if (!_.isFinite(a) || !_.isFinite(b)) throw new TypeError('add takes numbers');
  return a - b;
}

function total(xs) {
  return xs.reduce((sum, x) => add(sum, x), 0);
}

module.exports = { add, total };
