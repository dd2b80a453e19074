"""Serves REPORTS_DIR over HTTP, so the `reports` asset's link opens a report in one click.

A browser refuses a `file://` link from an http page ("Not allowed to load local resource"),
and a file path works only on the machine holding REPORTS_DIR, so the UI links each HTML report
under REPORTS_URL instead. Dagster's webserver serves no files of ours; this is the smallest
server that does: the standard library's, read-only, only REPORTS_DIR (no parent, no symlink
out of it), bound to 127.0.0.1 unless told otherwise. Behind a team's reverse proxy, or with any
web server pointed at REPORTS_DIR, set REPORTS_URL to that address instead.

    .venv/bin/python -m recommender_pipeline.outputs.report_server            # 127.0.0.1:8070
    .venv/bin/python -m recommender_pipeline.outputs.report_server --port 9000 --dir reports
"""

from __future__ import annotations

import argparse
import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8070


class ReportsHandler(http.server.SimpleHTTPRequestHandler):
    """GET and HEAD of files under the served folder only; anything resolving outside it is 404."""

    def translate_path(self, path: str) -> str:
        translated = Path(super().translate_path(path)).resolve()
        root = Path(self.directory).resolve()
        if translated != root and root not in translated.parents:
            return str(root / ".outside-reports-dir" / "not-found")  # a path that is never there: 404
        return str(translated)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a step or a test has its own logs."""


def make_server(directory: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> http.server.HTTPServer:
    """A threading HTTP server of `directory` on `host:port` (port 0: any free port)."""
    handler = functools.partial(ReportsHandler, directory=str(Path(directory).resolve()))
    return http.server.ThreadingHTTPServer((host, port), handler)


@contextmanager
def serving(directory: Path, host: str = DEFAULT_HOST, port: int = 0) -> Iterator[str]:
    """Serves `directory` in a thread while the block runs; yields its base URL (ends with /)."""
    server = make_server(directory, host, port)
    thread = threading.Thread(target=server.serve_forever, name="report-server", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: list[str] | None = None) -> None:
    from recommender_pipeline.settings import load_settings

    parser = argparse.ArgumentParser(description="Serve REPORTS_DIR over HTTP (read-only) for the UI's links.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dir", type=Path, default=None, help="folder to serve (default: REPORTS_DIR)")
    args = parser.parse_args(argv)
    directory = args.dir or load_settings().reports_dir
    directory.mkdir(parents=True, exist_ok=True)
    server = make_server(directory, args.host, args.port)
    print(f"serving {directory.resolve()} on http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
