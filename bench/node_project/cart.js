const _ = require('lodash');

function lines(items) {
  return _.map(_.groupBy(items, 'sku'), (group, sku) => ({ sku, qty: _.sumBy(group, 'qty') }));
}

function cheapest(items) {
  return _.minBy(items, 'price');
}

module.exports = { lines, cheapest };
