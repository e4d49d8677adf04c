"""Wait until the scoring API answers /ready, then print its answer (for scripts/demo_lib.sh).

Polls URL/ready (no fixed sleep) until it answers 200. Gives up, naming the API's log, when the
process PID exits first or the API is not ready within the timeout.

    python scripts/wait_ready.py http://127.0.0.1:8123 4242 logs/score_api.log
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wait until the scoring API answers /ready; print its answer.")
    parser.add_argument("url", help="the API's base URL")
    parser.add_argument("pid", type=int, help="the API's process id: stop waiting if it exits")
    parser.add_argument("log", help="the API's log file, named in the error messages")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            with urllib.request.urlopen(args.url + "/ready", timeout=1) as answer:
                print(answer.read().decode())
                return 0
        except OSError:  # not listening yet, or 503 while the model loads
            try:
                os.kill(args.pid, 0)
            except OSError:
                sys.exit(f"error: the API exited: see {args.log}")
            if time.monotonic() > deadline:
                sys.exit(f"error: the API was not ready within {args.timeout:g} s: see {args.log}")
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
