"""A stand-in worker for supervision tests: serves GET /health on --port, and misbehaves on request.

  --exit N        print a line and exit with code N at once (a crash loop under supervision)
  --ignore-term   ignore SIGTERM (the supervisor must escalate to SIGKILL)
  --never-ready   serve /health with 503 forever (readiness must time out)
  --crash-file F  while file F exists, exit with code 3 at once (a crash that can be turned off)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="standin")
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--crash-file", default=None)
    args = parser.parse_args()

    print(f"{args.name} pid {os.getpid()} starting on port {args.port}", flush=True)
    if args.exit is not None or (args.crash_file and os.path.exists(args.crash_file)):
        code = 3 if args.exit is None else args.exit
        print(f"{args.name}: fatal: configured to exit with {code}", flush=True)
        sys.exit(code)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM ignored", flush=True))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    status = 503 if args.never_ready else 200

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            code = status if self.path == "/health" else 404
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Health)
    print(f"{args.name} serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
