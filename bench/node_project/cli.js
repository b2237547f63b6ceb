const yargs = require('yargs/yargs');

function parse(argv) {
  return yargs(argv)
    .option('qty', { type: 'number', default: 1 })
    .option('express', { type: 'boolean', default: false })
    .strict()
    .exitProcess(false)
    .parseSync();
}

module.exports = { parse };
