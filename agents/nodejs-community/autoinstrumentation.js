// agent-mount's agents tree: the Node.js agent, loaded by the built-in `nodejs` recipe
// (NODE_OPTIONS=--require {dir}/nodejs-community/autoinstrumentation.js). The upstream
// register module starts the SDK from OTEL_* variables (OTLP over HTTP by default) with
// every auto-instrumentation, and flushes on exit.
require('@opentelemetry/auto-instrumentations-node/register');
