const express = require('express');
const { check } = require('./schema.js');

function makeApp() {
  const app = express();
  app.use(express.json());
  app.get('/health', (req, res) => res.json({ ok: true }));
  app.post('/orders', (req, res) => {
    const problems = check(req.body);
    if (problems.length) return res.status(400).json({ problems });
    return res.status(201).json({ id: req.body.id });
  });
  return app;
}

module.exports = { makeApp };
