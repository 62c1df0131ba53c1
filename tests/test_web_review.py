"""The Review view of the web page, in a real headless Chromium: a face filed under the wrong
person shows with its thumbnail, its evidence and links to both people; two names for one person
and a re-saved copy under another name are listed; the view has its own address and works with a
read-only key. (Remove, move and merge buttons are not there yet: they need the faces routes.)"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import webtools
from facephotos import make_face_variants
from webtools import Watch

from facedb.evaluation.servers import FacedbServer

pytestmark = pytest.mark.slow  # a real Chromium and a facedb server


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=20_000)
    return _expect(target)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FacedbServer]:
    """person1..person3 from files; person3's third photo filed under person1; person2's third
    photo enrolled as "Person Two" too (one person, two names)."""
    people = make_face_variants(tmp_path_factory.mktemp("review-people"), n_variants=3)
    root = tmp_path_factory.mktemp("web-review")
    gallery = root / "gallery"
    folders = {"person1": people["person1"] + people["person3"][2:], "person2": people["person2"][:2],
               "person3": people["person3"][:2], "Person Two": people["person2"][2:]}
    for name, paths in folders.items():
        (gallery / name).mkdir(parents=True)
        for p in paths:
            shutil.copy(p, gallery / name / p.name)
    srv = FacedbServer(root / "home", workers=1).start()
    try:
        res = srv.cli("import", str(gallery), "-q")
        assert res.returncode == 0, res.stderr.decode()
        srv.keys = {"read": srv.new_key("read-key", "read")}
        yield srv
        assert srv.stop() == 0, srv.log()
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = webtools.skip_reason()
    if reason:
        from conftest import require_or_skip

        require_or_skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = webtools.launch(pw)
        try:
            yield b
        finally:
            b.close()


def test_the_review_view_lists_the_findings_with_thumbnails(browser: Any, served: FacedbServer) -> None:
    ctx = browser.new_context(viewport={"width": 1100, "height": 760}, device_scale_factor=1)
    ctx.add_init_script(webtools.WATCH_SCRIPT)
    ctx.set_default_timeout(20_000)
    try:
        page = ctx.new_page()
        watch = Watch(served.url)
        watch.attach(page)
        page.goto(served.url + "/#review")
        page.wait_for_selector("body[data-ready='true']")
        page.fill("input[name='api_key']", served.keys["read"])
        page.press("input[name='api_key']", "Enter")
        # The address named the view: after signing in it opens, and the nav marks it.
        expect(page.locator("#view-review")).to_be_visible()
        expect(page.locator("#nav a[data-view='review']")).to_have_attribute("aria-current", "page")
        expect(page).to_have_title("Review – facedb")
        expect(page.locator("#review-summary")).to_contain_text("4 people · 9 faces")
        outlier = page.locator("#review-outliers .finding")
        expect(outlier).to_have_count(1)
        expect(outlier.locator("a.subject-link")).to_have_text("person1")
        expect(outlier.locator(".face-src")).to_have_text("person3_v2.jpg")
        expect(outlier.locator(".evidence")).to_contain_text("matched by another person better than by its own")
        expect(outlier.locator(".evidence a")).to_have_attribute("href", "#people/person3")
        # The thumbnail is the real crop (the server has the source file).
        expect(outlier.locator("img[data-placeholder='false']")).to_have_count(1)
        pair = page.locator("#review-lookalikes .finding")
        expect(pair).to_have_count(1)
        assert sorted(pair.locator("a").all_text_contents()) == ["Person Two", "person2"]
        dups = page.locator("#review-duplicates .finding")
        expect(dups.first.locator("img")).to_have_count(2)
        # No action buttons yet: the view only reads.
        expect(page.locator("#view-review button")).to_have_count(0)
        # A person's link opens their page; back returns to the review.
        outlier.locator(".evidence a").click()
        expect(page.locator("#subject-title")).to_have_text("person3")
        page.go_back()
        expect(page.locator("#review-outliers .finding")).to_have_count(1)
        watch.check(page)
    finally:
        ctx.close()


def test_the_cli_through_the_server_gets_the_same_review(served: FacedbServer) -> None:
    """The owner's CLI goes through the server's socket (the thin client's ``review``): the same
    findings as the HTTP route, and the human table names them."""
    import httpx

    from facedb.contract.review import ReviewReport
    from facedb.evaluation.servers import bearer

    via_cli = ReviewReport.from_dict(served.cli_json("review"))
    via_http = ReviewReport.from_dict(httpx.get(served.url + "/v1/review", headers=bearer(served.keys["read"]),
                                                timeout=60).json())
    assert via_cli == via_http
    assert [(o.subject, o.nearest_other, o.reason) for o in via_cli.outliers] == [
        ("person1", "person3", "closer_to_other")]
    text = served.cli("review").stdout.decode()
    assert "1 outlier" in text and "person3_v2.jpg" in text and "1 look-alike pair" in text
