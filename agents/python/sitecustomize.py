"""agent-mount's agents tree: OTLP over HTTP unless the app says otherwise, then the agent.

The built-in `python` recipe puts `{dir}/python` before the upstream
`opentelemetry/instrumentation/auto_instrumentation` directory on PYTHONPATH, so Python
imports this `sitecustomize` first. opentelemetry-distro defaults the protocol to gRPC,
which needs grpcio (not in this tree: its wheels are built per interpreter); this sets
OTLP/HTTP only where the app's environment has no protocol of its own, then runs the
upstream sitecustomize, which starts the agent.
"""

import os
import runpy

os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
runpy.run_path(
    os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "opentelemetry",
        "instrumentation",
        "auto_instrumentation",
        "sitecustomize.py",
    )
)
