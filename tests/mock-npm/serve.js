// Starts openai-mock-api (an OpenAI-compatible mock server agentbox did not write, pinned in
// package.json) on 127.0.0.1 and an ephemeral port: its own start() listens on every
// interface, so this uses the package's MockServer and listens here. Prints the port on the
// first stdout line; ends on SIGTERM/SIGINT. Usage: node serve.js CONFIG.json
'use strict';
const fs = require('fs');
const { MockServer, ConfigLoader } = require('openai-mock-api');

const quiet = {
  info() {},
  debug() {},
  warn() {},
  error(msg, err) {
    process.stderr.write(`openai-mock-api: ${msg} ${err && err.message ? err.message : ''}\n`);
  },
};
const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
new ConfigLoader(quiet).validateConfig(config);
const server = new MockServer(config, quiet);
const http = server.app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${http.address().port}\n`);
});
const stop = () => {
  if (http.closeAllConnections) http.closeAllConnections();
  http.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
