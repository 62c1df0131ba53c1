"""The Discover view of the web page, in a real headless Chromium over a real ``facedb serve``.

person1 of insightface's group photo is enrolled; the page is given person1's, person2's (two
files) and person3's crops and the group photo itself (six people: person4..person6 are strangers
seen once). All the photos go in one ``POST /discover``; the grid shows person1 named (a link to
their page), person2 and person3 as groups to name, and a face crop per face, drawn in the browser
from the user's files. Two groups are merged and dropped, person2's group is enrolled under a new
name (the group photo resolved to the right face), after which the group shows as named and
``facedb subjects`` lists the person with their faces. A read-only key sees the groups but cannot
enroll; the view's address survives a reload (the photos do not); at 390 px with a 200-character
name nothing is wider than the screen.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webtools
from facephotos import insightface_photos, make_face_variants
from PIL import Image
from webtools import Watch, drop_file, screenshot

from facedb.evaluation.servers import FacedbServer

pytestmark = pytest.mark.slow  # a real Chromium and a facedb server

DESKTOP = {"width": 1100, "height": 760}
PHONE = {"width": 390, "height": 844}
LONG_NAME = ("Wolfeschlegelsteinhausenbergerdorff" * 6)[:200]


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=30_000)  # the server analyses the photos on a busy 2-core machine
    return _expect(target)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("discover-people"), n_variants=2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> Iterator[FacedbServer]:
    """person1 enrolled (one photo, from a file); a read and a write key."""
    root = tmp_path_factory.mktemp("web-discover")
    (root / "gallery" / "person1").mkdir(parents=True)
    shutil.copy(people["person1"][1], root / "gallery" / "person1" / "p1.jpg")
    srv = FacedbServer(root / "home", workers=1).start()
    try:
        res = srv.cli("import", str(root / "gallery"), "-q")
        assert res.returncode == 0, res.stderr.decode()
        srv.keys = {"read": srv.new_key("read-key", "read"), "write": srv.new_key("write-key", "write")}
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


@pytest.fixture
def pages(browser: Any, served: FacedbServer) -> Iterator[Callable[..., Any]]:
    """``pages(viewport)`` -> a new watched page in a fresh context."""
    opened: list[tuple[Any, Any, Watch]] = []

    def new_page(viewport: dict[str, int] = DESKTOP) -> Any:
        ctx = browser.new_context(viewport=viewport, device_scale_factor=1)
        ctx.add_init_script(webtools.WATCH_SCRIPT)
        ctx.set_default_timeout(30_000)
        page = ctx.new_page()
        watch = Watch(served.url)
        watch.attach(page)
        opened.append((ctx, page, watch))
        return page

    yield new_page
    try:
        for _, page, watch in opened:
            watch.check(page)
    finally:
        for ctx, _, _ in opened:
            ctx.close()


def open_discover(page: Any, srv: FacedbServer, key: str) -> None:
    page.goto(srv.url + "/")
    page.wait_for_selector("body[data-ready='true']")
    page.fill("input[name='api_key']", key)
    page.press("input[name='api_key']", "Enter")
    expect(page.locator("#who-text")).to_contain_text("Signed in as")
    page.click("#nav a[data-view='discover']")
    expect(page.locator("#view-discover")).to_be_visible()
    assert page.evaluate("() => location.hash") == "#discover"


def cards(page: Any) -> Any:
    return page.locator("#discover-clusters > li.cluster")


def card_with(page: Any, text: str) -> Any:
    return cards(page).filter(has_text=text)


def crop_is_a_picture(page: Any, canvas: Any) -> bool:
    """Whether a crop canvas holds an image (many distinct colours), not a blank or flat fill."""
    return bool(canvas.evaluate("""(c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add((d[i] >> 3) * 1024 + (d[i + 1] >> 3) * 32 + (d[i + 2] >> 3));
        return seen.size > 50;
    }"""))


def test_discover_shows_groups_with_crops_merges_drops_and_enrolls(pages: Callable[..., Any], served: FacedbServer,
                                                                   people: dict[str, list[Path]]) -> None:
    page = pages()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    open_discover(page, served, served.keys["write"])
    group = insightface_photos() / "t1.jpg"
    photos = [people["person1"][0], people["person2"][0], people["person2"][1], people["person3"][0], group]
    page.set_input_files("#discover-files", [str(p) for p in photos])
    # person1 (named), person2, person3, and person4..person6 seen once in the group photo.
    expect(cards(page)).to_have_count(6)
    # One request for the whole run, nothing else sent: the crops are drawn here.
    posts = [r for r in requests if r.startswith("POST ")]
    assert posts == [f"POST {served.url}/v1/discover"], posts
    named = card_with(page, "person1")
    expect(named.locator(".cluster-title a")).to_have_attribute("href", "#people/person1")
    expect(named.locator(".cluster-size")).to_have_text("2 faces · 2 photos")
    expect(cards(page).first).to_have_class("cluster named")
    p2 = cards(page).filter(has_text="3 faces · 3 photos")
    expect(p2).to_have_count(1)
    expect(p2.locator("canvas.crop")).to_have_count(3)
    expect(cards(page).filter(has_text="2 faces · 2 photos")).to_have_count(2)  # person1 and person3
    expect(cards(page).filter(has_text="1 face · 1 photo")).to_have_count(3)
    expect(page.locator("#discover-summary")).to_have_text("6 people · 10 faces · 1 named, 5 to name")
    # Every face has its crop, cut from the user's photo.
    expect(page.locator("canvas.crop[data-drawn='true']")).to_have_count(10)
    for canvas in page.locator("canvas.crop").all():
        assert crop_is_a_picture(page, canvas)
    screenshot(page, "discover", full_page=True)

    # Merge: two of the one-face groups become one card with both faces, where the first was.
    singles = cards(page).filter(has_text="1 face · 1 photo")
    expect(page.locator("#discover-merge")).to_be_disabled()
    singles.nth(0).locator(".cluster-select").check()
    expect(page.locator("#discover-merge")).to_be_disabled()
    singles.nth(1).locator(".cluster-select").check()
    expect(page.locator("#discover-selected")).to_have_text("2 selected")
    page.click("#discover-merge")
    expect(cards(page)).to_have_count(5)
    merged = cards(page).filter(has_text="2 faces · 1 photo")
    expect(merged).to_have_count(1)
    expect(merged.locator(".cluster-title")).to_contain_text(" + ")
    expect(merged.locator("canvas.crop[data-drawn='true']")).to_have_count(2)
    expect(page.locator("#discover-summary")).to_have_text("5 people · 10 faces · 1 named, 4 to name")
    # Drop: the merged card leaves the grid (and nothing is sent).
    merged.locator(".cluster-drop").click()
    expect(cards(page)).to_have_count(4)
    expect(page.locator("#discover-summary")).to_have_text("4 people · 8 faces · 1 named, 3 to name")

    # Enroll person2's group under a new name: its three photos, the group photo resolved to the
    # one face that matches the other two.
    requests.clear()
    p2.locator("input[name='cluster_name']").fill("Discovered Two")
    p2.locator("button[type='submit']").click()
    named2 = card_with(page, "Discovered Two")
    expect(named2.locator(".cluster-title a")).to_have_attribute("href", "#people/Discovered%20Two")
    expect(named2).to_have_class("cluster named")
    expect(named2.locator(".cluster-report li")).to_have_count(3)
    expect(named2.locator(".cluster-report li[data-state='enrolled']")).to_have_count(3)
    expect(named2.locator(".cluster-report li", has_text="t1.jpg")).to_contain_text("of 6, resolved")
    expect(named2.locator("input[name='cluster_name']")).to_have_count(0)
    expect(page.locator("#discover-summary")).to_have_text("4 people · 8 faces · 2 named, 2 to name")
    assert [r for r in requests if r.startswith("POST ")] == [
        f"POST {served.url}/v1/subjects/Discovered%20Two/images"], requests
    listed = {s["name"]: s for s in served.cli_json("subjects")}
    assert listed["Discovered Two"]["faces"] == 3 and listed["Discovered Two"]["images"] == 3, listed

    # A name is refused before anything is sent; the person's link opens their page.
    p3 = cards(page).filter(has_text="2 faces · 2 photos").filter(has_not_text="person1")
    p3.locator("button[type='submit']").click()
    expect(p3.locator(".field-error")).to_have_text("Enter the name of the person.")
    named2.locator(".cluster-title a").click()
    expect(page.locator("#subject-title")).to_have_text("Discovered Two")
    expect(page.locator("#subject-summary")).to_contain_text("3 photos · 3 faces")
    # Leaving the view let go of the photos: no object URL is left.
    page.click("#nav a[data-view='search']")
    expect(page.locator("#view-search")).to_be_visible()
    assert page.evaluate("window.__facedbTest.live.size") == 0


def test_a_lone_group_photo_is_refused_with_its_reason(pages: Callable[..., Any], served: FacedbServer,
                                                      tmp_path: Path) -> None:
    """A group of one face from a photo of six: resolve cannot tell whose it is, and says so."""
    # Other bytes than the t1.jpg another test may have enrolled (that would be enrolled_as_other).
    group = tmp_path / "party.jpg"
    Image.open(insightface_photos() / "t1.jpg").convert("RGB").save(group, quality=90)
    page = pages()
    open_discover(page, served, served.keys["write"])
    page.set_input_files("#discover-files", [str(group)])
    expect(cards(page)).to_have_count(6)
    stranger = page.locator("#discover-clusters > li.cluster.unnamed").first
    stranger.locator("input[name='cluster_name']").fill("Only In A Group")
    stranger.locator("button[type='submit']").click()
    row = stranger.locator(".cluster-report li[data-reason='ambiguous_faces']")
    expect(row).to_contain_text("several faces, and none is clearly this person's")
    expect(stranger).to_have_class("cluster unnamed")  # nothing enrolled: still to name
    expect(stranger.locator("button[type='submit']")).to_be_enabled()
    assert "Only In A Group" not in {s["name"] for s in served.cli_json("subjects")}


def test_a_read_only_key_sees_the_groups_but_cannot_enroll_and_the_address_survives_a_reload(
        pages: Callable[..., Any], served: FacedbServer, people: dict[str, list[Path]], tmp_path: Path) -> None:
    page = pages()
    open_discover(page, served, served.keys["read"])
    expect(page.locator("#view-discover .scope-note")).to_be_visible()
    page.set_input_files("#discover-files", [str(people["person4"][0]), str(people["person4"][1])])
    expect(cards(page)).to_have_count(1)
    expect(cards(page).first.locator(".cluster-size")).to_have_text("2 faces · 2 photos")
    expect(cards(page).first.locator("button[type='submit']")).to_be_disabled()
    expect(cards(page).first.locator("input[name='cluster_name']")).to_be_disabled()
    # A file that is no photo is listed with its reason, as the other views show them.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    page.set_input_files("#discover-files", [str(notes), str(people["person5"][0])])
    expect(cards(page)).to_have_count(1)
    expect(page.locator("#discover-failed li")).to_contain_text("not an image")
    # A reload keeps the view (the photos are gone: the page keeps none).
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    expect(page.locator("#view-discover")).to_be_visible()
    expect(page.locator("#nav a[data-view='discover']")).to_have_attribute("aria-current", "page")
    expect(page).to_have_title("Discover – facedb")
    expect(cards(page)).to_have_count(0)
    expect(page.locator("#discover-result")).to_be_hidden()
    # A photo dropped on the view is looked at too.
    drop_file(page, "#discover-drop", people["person4"][0])
    expect(cards(page)).to_have_count(1)
    expect(cards(page).first.locator("canvas.crop[data-drawn='true']")).to_have_count(1)
    # An error of the server shows in the alert: a key revoked meanwhile signs the user out.
    res = served.cli("keys", "revoke", "read-key")
    assert res.returncode == 0, res.stderr.decode()
    page.set_input_files("#discover-files", [str(people["person4"][0])])
    expect(page.locator("#view-signin")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("no longer accepted")


def test_at_phone_width_a_long_name_fits(pages: Callable[..., Any], served: FacedbServer,
                                         people: dict[str, list[Path]]) -> None:
    page = pages(PHONE)
    open_discover(page, served, served.keys["write"])
    width = "() => document.documentElement.scrollWidth"
    assert page.evaluate(width) <= PHONE["width"]
    # The five views' links stay on one row.
    rows = "() => new Set(Array.from(document.querySelectorAll('#nav a')).map((a) => a.getBoundingClientRect().top)).size"
    assert page.evaluate(rows) == 1
    page.set_input_files("#discover-files", [str(people["person6"][0]), str(people["person6"][1])])
    expect(cards(page)).to_have_count(1)
    card = cards(page).first
    card.locator("input[name='cluster_name']").fill(LONG_NAME)
    card.locator("button[type='submit']").click()
    expect(card_with(page, LONG_NAME[:40]).locator(".cluster-title a")).to_have_attribute("title", LONG_NAME)
    assert page.evaluate(width) <= PHONE["width"]
    box = cards(page).first.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#view-discover input, #view-discover button, #nav a'))
        .filter((e) => e.offsetParent)
        .filter((e) => e.getBoundingClientRect().height < 24).map((e) => e.id || e.textContent)""")
    assert small == []
    screenshot(page, "phone-discover", full_page=True)
