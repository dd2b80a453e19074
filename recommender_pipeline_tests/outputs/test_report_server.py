"""The report server: REPORTS_DIR over HTTP on 127.0.0.1, nothing outside it. No broker."""

import urllib.error
import urllib.request

import pytest

from recommender_pipeline.outputs.report_server import DEFAULT_HOST, serving

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, bytes]:
    try:
        with OPENER.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_serves_reports_dir_only_on_127_0_0_1(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "local-recommender-2026-12-02-abcd1234-report.html").write_text("<h1>report</h1>")
    (tmp_path / "secret.txt").write_text("not yours")
    (reports / "escape").symlink_to(tmp_path / "secret.txt")
    assert DEFAULT_HOST == "127.0.0.1"
    with serving(reports) as url:
        assert url.startswith("http://127.0.0.1:")
        assert get(url + "local-recommender-2026-12-02-abcd1234-report.html") == (200, b"<h1>report</h1>")
        for outside in ("../secret.txt", "%2e%2e/secret.txt", "escape"):
            status, body = get(url + outside)
            assert status == 404 and b"not yours" not in body, outside


def test_reports_asset_links_under_reports_url(tmp_path):
    from recommender_pipeline.assets.reports import report_url

    reports = tmp_path / "reports"
    path = reports / "a b-recommender-2026-12-02-abcd1234-report.html"
    assert (
        report_url("http://h:8070/", reports, path) == "http://h:8070/a%20b-recommender-2026-12-02-abcd1234-report.html"
    )
    assert report_url("", reports, path) is None
    with pytest.raises(ValueError):
        report_url("http://h/", reports, tmp_path / "elsewhere.html")
