"""Start Azure ML's inference server (azmlinfsrv) bound to one address, loopback by default.

Runs with .venv-azureml/bin/python. The server binds 0.0.0.0 and has no host flag; this
sets its module's DEFAULT_HOST and hands every other argument to it unchanged. Reads the
entry script and the model folder; writes nothing but the server's log on stdout.

    .venv-azureml/bin/python scripts/azmlinfsrv_local.py \
        --entry_script score.py --model_dir DIR --port 5001
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run azmlinfsrv on one address; other arguments go to azmlinfsrv "
                    "(--entry_script, --model_dir, --port, --worker_count, ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (the server's own default is 0.0.0.0)")
    return parser


def serve(host: str, server_args: list[str]) -> None:
    """Bind azmlinfsrv to `host` and run it with its own command-line arguments."""
    try:
        from azureml_inference_server_http import amlserver
    except ImportError:
        print("error: azureml-inference-server-http is not installed in this Python; "
              "run `make install-azureml` and use .venv-azureml/bin/python", file=sys.stderr)
        raise SystemExit(2) from None
    amlserver.DEFAULT_HOST = host  # read by amlserver.run() when it starts gunicorn
    sys.argv = ["azmlinfsrv", *server_args]
    amlserver.run()


def main(argv: list[str] | None = None) -> int:
    args, server_args = build_parser().parse_known_args(argv)
    serve(args.host, server_args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
