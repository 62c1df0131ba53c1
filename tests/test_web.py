"""The web page of ``facedb serve`` in a real headless Chromium (Debian's, driven by Playwright).

One server for the module, over a home with person1..person4 of insightface's group photo
enrolled from files (so their thumbnails are real crops); person5 and person6 are strangers.
Covers sign-in (wrong, read-only, revoked keys), search by file and by drag-and-drop with the
faces boxed and named or "unknown", keyboard selection of a face, the Yale faces (when
``../shared/datasets`` is there), the people list and one person's page, enrolling through the
page with a rejected file, rename and delete, the phone-width layout, and that the page keeps
nothing but the key. Layout and addresses: at 390 px no view is wider than the screen with a
200-character name enrolled, no table header sits over a hidden column, the labels on a group
photo never overlap; every view has its own address (#people/<name> opens a subject, the back
button and a reload work), and names with "/", "%", "#", "?", blanks and non-ASCII letters open,
rename and delete. Browser tests skip with a clear reason when Chromium or Playwright is
absent; ``/v1/whoami`` (which the page uses) is checked without a browser.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import webtools
from facephotos import insightface_photos, make_face_variants
from webtools import Watch, drop_file, live_object_urls, screenshot

from facedb.evaluation.servers import FacedbServer, bearer

pytestmark = pytest.mark.slow  # a real Chromium and a facedb server

ENROLLED = ("person1", "person2", "person3", "person4")
DESKTOP = {"width": 1100, "height": 760}
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: 200 characters without a blank: the longest word a name can be (the limit is 256).
LONG_NAME = ("Wolfeschlegelsteinhausenbergerdorff" * 6)[:200]
#: Every character that means something in a URL, a blank and non-ASCII letters.
ODD_NAME = "R&D/ops 100% #1? Zoë 東京"
ODD_RENAMED = "a/../b ?x=1#top %zz ü+"


def expect(target: Any) -> Any:
    """Playwright's ``expect``, waiting up to 20 s (as the pages' own default timeout): a search
    is analysed by the server, which shares this 2-core machine with the rest of the suite."""
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=20_000)
    return _expect(target)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("web-people"), n_variants=3)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> Iterator[FacedbServer]:
    """A server over person1..person4 (3 photos each, enrolled from files), with a read and a write key."""
    root = tmp_path_factory.mktemp("web")
    gallery = root / "gallery"
    for name in ENROLLED:
        (gallery / name).mkdir(parents=True)
        for p in people[name]:
            shutil.copy(p, gallery / name / p.name)
    srv = FacedbServer(root / "home", workers=1).start()
    try:
        # Through the server's socket: the owner's CLI sends the file paths, so thumbnails work.
        res = srv.cli("import", str(gallery), "-q")
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

        require_or_skip(reason)  # CI (FACEDB_REQUIRE_SERVERS=1) fails instead of skipping
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = webtools.launch(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def pages(browser: Any, served: FacedbServer) -> Iterator[Callable[..., Any]]:
    """``pages(viewport)`` -> a new page in a fresh context (its own sessionStorage), watched."""
    opened: list[tuple[Any, Any, Watch]] = []

    def new_page(viewport: dict[str, int] = DESKTOP) -> Any:
        ctx = browser.new_context(viewport=viewport, device_scale_factor=1, has_touch=viewport is PHONE)
        ctx.add_init_script(webtools.WATCH_SCRIPT)
        ctx.set_default_timeout(20_000)
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


def open_page(page: Any, srv: FacedbServer) -> None:
    page.goto(srv.url + "/")
    page.wait_for_selector("body[data-ready='true']")


def sign_in(page: Any, srv: FacedbServer, key: str) -> None:
    open_page(page, srv)
    page.fill("input[name='api_key']", key)
    page.press("input[name='api_key']", "Enter")
    expect(page.locator("#who-text")).to_contain_text("Signed in as")
    expect(page.locator("#view-search")).to_be_visible()


def search(page: Any, path: Path, faces: int | None = None) -> list[str]:
    """Choose ``path`` in the search input; the names shown on the faces, left to right."""
    page.set_input_files("input[name='images']", str(path))
    return _result(page, path.name, faces)


def _result(page: Any, name: str, faces: int | None) -> list[str]:
    expect(page.locator("#search-summary")).to_contain_text(name)
    if faces is not None:
        expect(page.locator("#face-boxes .face-box")).to_have_count(faces)
    return [t.strip() for t in page.locator("#face-list .face-who").all_text_contents()]


def tags(page: Any) -> list[str]:
    """The labels drawn on the face boxes."""
    return [" ".join(t.split()) for t in page.locator("#face-boxes .face-tag").all_text_contents()]


def storage(page: Any) -> dict[str, Any]:
    return page.evaluate("""async () => ({
        session: Object.keys(sessionStorage), local: Object.keys(localStorage), cookie: document.cookie,
        idb: (await indexedDB.databases()).map((d) => d.name),
        caches: self.caches ? await caches.keys() : [] })""")


def subject_hash(name: str) -> str:
    """The page's address of a subject: what encodeURIComponent makes of the name."""
    return "#people/" + quote(name, safe="!~*'()")


def api_path(name: str) -> str:
    return "/v1/subjects/" + quote(name, safe="")


def enroll_over_http(srv: FacedbServer, name: str, photo: Path) -> None:
    r = httpx.post(srv.url + api_path(name) + "/images", files=[("images", (photo.name, photo.read_bytes()))],
                   headers=bearer(srv.keys["write"]), timeout=120)
    assert r.status_code == 200 and r.json()["enrolled"] == 1, r.text
    assert [s["name"] for s in httpx.get(srv.url + "/v1/subjects", headers=bearer(srv.keys["read"])).json()
            if s["name"] == name] == [name]


def delete_over_http(srv: FacedbServer, name: str) -> None:
    httpx.delete(srv.url + api_path(name), headers=bearer(srv.keys["write"]), timeout=120)


def page_width(page: Any) -> int:
    return int(page.evaluate("() => document.documentElement.scrollWidth"))


def label_boxes(page: Any) -> list[dict[str, float]]:
    """The labels drawn on the face boxes, as shown: the names, or the numbers when names do not fit."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('#face-boxes .face-tag, #face-boxes .face-key'))
        .map((e) => e.getBoundingClientRect())
        .filter((r) => r.width > 2 && r.height > 2)
        .map((r) => ({x: r.x, y: r.y, width: r.width, height: r.height}))""")


def overlapping(rects: list[dict[str, float]]) -> list[tuple[int, int]]:
    def hit(a: dict[str, float], b: dict[str, float]) -> bool:
        return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
                and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])

    return [(i, j) for i in range(len(rects)) for j in range(i + 1, len(rects)) if hit(rects[i], rects[j])]


def headers_without_a_column(page: Any) -> list[str]:
    """Visible header cells of the people table with no visible cell under them in some row."""
    return page.evaluate("""() => {
        const shown = (e) => e.getClientRects().length > 0 && e.getBoundingClientRect().width > 1;
        const heads = Array.from(document.querySelectorAll('#people-table thead th'));
        const rows = Array.from(document.querySelectorAll('#people-rows tr'))
          .filter((tr) => tr.cells.length === heads.length);
        if (!rows.length) return ['no row to compare with'];
        const bad = [];
        heads.forEach((th, i) => {
          if (shown(th) && rows.some((tr) => !shown(tr.cells[i]))) bad.push(th.textContent);
          if (!shown(th) && rows.some((tr) => shown(tr.cells[i]))) bad.push(`(a cell without its header) ${i}`);
        });
        return bad;
    }""")


def inside(inner: dict[str, float], outer: dict[str, float], slack: float = 1.0) -> bool:
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


# -- the server side ----------------------------------------------------------------------------

def test_whoami_names_the_key_and_its_scope(served: FacedbServer) -> None:
    for scope in ("read", "write"):
        r = httpx.get(served.url + "/v1/whoami", headers=bearer(served.keys[scope]))
        assert r.status_code == 200 and r.json() == {"name": f"{scope}-key", "scope": scope}
    assert httpx.get(served.url + "/v1/whoami").status_code == 401
    bad = httpx.get(served.url + "/v1/whoami", headers=bearer("fdb_not-a-key"))
    assert bad.status_code == 401 and bad.json()["kind"] == "unauthorized"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(served.home / "facedb.sock"))) as local:
        assert local.get("http://facedb/v1/whoami").json() == {"name": "local", "scope": "admin"}


def test_page_is_served_with_a_strict_policy_and_packaged_assets(served: FacedbServer) -> None:
    page = httpx.get(served.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "connect-src 'self'" in csp
    html = page.text
    assert '<input id="api-key" name="api_key"' in html and 'name="images" type="file"' in html
    assert "<style" not in html and "style=" not in html and "http" not in html.split("<body", 1)[1]
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert httpx.get(served.url + asset).status_code == 200, asset


# -- sign in ----------------------------------------------------------------------------------------

def test_sign_in_refuses_a_wrong_key_and_keeps_only_the_key(pages: Callable[..., Any], served: FacedbServer) -> None:
    page = pages()
    open_page(page, served)
    expect(page.locator("#view-signin")).to_be_visible()
    expect(page.locator("#server-info")).to_contain_text("threshold 0.50")
    screenshot(page, "sign-in")
    page.fill("input[name='api_key']", "fdb_this-is-not-a-key")
    page.press("input[name='api_key']", "Enter")
    expect(page.locator("#signin-error")).to_have_text("This key was not accepted: it is wrong or it has been revoked.")
    expect(page.locator("#api-key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#api-key")).to_be_focused()
    assert storage(page)["session"] == []
    assert page.locator("#nav").is_hidden()

    page.fill("input[name='api_key']", served.keys["read"])
    page.press("input[name='api_key']", "Enter")
    expect(page.locator("#who-text")).to_have_text("Signed in as read-key (read)")
    expect(page.locator("#status")).to_contain_text("Signed in as read-key")
    kept = storage(page)
    assert kept == {"session": ["facedb.api_key"], "local": [], "cookie": "", "idb": [], "caches": []}
    # A reload in the same tab stays signed in; signing out forgets the key.
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    expect(page.locator("#who-text")).to_have_text("Signed in as read-key (read)")
    page.click("#sign-out")
    expect(page.locator("#view-signin")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Signed out.")
    assert storage(page)["session"] == []


def test_a_key_revoked_while_signed_in_sends_the_user_back_with_a_message(pages: Callable[..., Any],
                                                                          served: FacedbServer) -> None:
    key = served.new_key("short-lived", "read")
    page = pages()
    sign_in(page, served, key)
    assert served.cli("keys", "revoke", "short-lived").returncode == 0
    assert httpx.get(served.url + "/v1/whoami", headers=bearer(key)).status_code == 401
    page.click("#nav a[data-view='people']")
    expect(page.locator("#view-signin")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("no longer accepted")
    assert storage(page)["session"] == []


# -- search -----------------------------------------------------------------------------------------

def test_search_boxes_every_face_with_its_name_or_unknown(pages: Callable[..., Any], served: FacedbServer) -> None:
    page = pages()
    sign_in(page, served, served.keys["read"])
    group = insightface_photos() / "t1.jpg"
    names = search(page, group, faces=6)
    assert names == ["person1", "person2", "person3", "person4", "unknown", "unknown"]
    labels = tags(page)
    assert [t.split(",")[0].split(" ")[0] for t in labels] == names
    assert all(re.search(r"\b0\.\d\d$", t) for t in labels), labels  # each label shows its distance
    expect(page.locator("#search-summary")).to_contain_text("6 faces in t1.jpg: 4 named, 2 unknown · threshold 0.50")
    # Every box lies on the photo, over the face the server found.
    photo = page.locator("#photo").bounding_box()
    assert photo and photo["width"] > 500
    boxes = [b.bounding_box() for b in page.locator("#face-boxes .face-box").all()]
    assert all(inside(b, photo) for b in boxes)
    assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)

    # Face 1 is selected at first; clicking face 2 lists its candidates with thumbnails.
    expect(page.locator("#matches-title")).to_have_text("Face 1: person1")
    page.locator("#face-boxes .face-box").nth(1).click()
    expect(page.locator("#matches-title")).to_have_text("Face 2: person2")
    expect(page.locator("#matches-verdict")).to_contain_text("within the threshold 0.50")
    first = page.locator("#matches-list .match").first
    expect(first.locator(".match-name")).to_have_text("person2")
    expect(first.locator(".badge")).to_have_text("match")
    expect(page.locator("#matches-list .match")).to_have_count(3)
    thumb = first.locator("img.thumb")
    expect(thumb).to_have_attribute("data-placeholder", "false")  # enrolled from a file: a real crop
    assert thumb.evaluate("(img) => img.complete && img.naturalWidth > 0")
    expect(thumb).to_have_attribute("alt", "Enrolled face of person2")
    page.locator("#face-boxes .face-box").nth(2).click()  # person3, for the screenshot
    expect(page.locator("#matches-list .match img[data-placeholder='false']")).to_have_count(3)
    screenshot(page, "search")

    # A stranger's face: unknown, with how far the closest person is.
    page.locator("#face-list .face-item").nth(4).click()
    expect(page.locator("#matches-title")).to_have_text("Face 5: unknown")
    expect(page.locator("#matches-verdict")).to_contain_text("over the threshold 0.50")
    expect(page.locator("#matches-list .badge").first).to_have_text("no match")


def test_a_dropped_photo_of_a_stranger_is_unknown_and_a_text_file_is_refused(
        pages: Callable[..., Any], served: FacedbServer, people: dict[str, list[Path]], tmp_path: Path) -> None:
    page = pages()
    sign_in(page, served, served.keys["read"])
    drop_file(page, "#search-drop", people["person6"][0])
    assert _result(page, people["person6"][0].name, faces=1) == ["unknown"]
    expect(page.locator("#search-summary")).to_contain_text("1 face in person6_v0.jpg: 0 named, 1 unknown")
    # Dropped anywhere on the search page works the same; a known face is named.
    drop_file(page, "main", people["person3"][2])
    assert _result(page, people["person3"][2].name, faces=1) == ["person3"]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    page.set_input_files("input[name='images']", str(notes))
    expect(page.locator("#alert")).to_have_text("This photo could not be searched: not an image.")
    expect(page.locator("#search-summary")).to_contain_text("notes.txt: not an image.")
    expect(page.locator("#face-boxes .face-box")).to_have_count(0)


def test_keyboard_selects_a_face_and_opens_its_person(pages: Callable[..., Any], served: FacedbServer) -> None:
    page = pages()
    sign_in(page, served, served.keys["read"])
    search(page, insightface_photos() / "t1.jpg", faces=6)
    page.focus("input[name='images']")
    page.keyboard.press("Tab")  # the search options
    page.keyboard.press("Tab")  # the faces: one tab stop, the selected face
    focused = page.locator("#face-boxes .face-box:focus")
    expect(focused).to_have_attribute("data-face", "0")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#face-boxes .face-box:focus")).to_have_attribute("data-face", "2")
    expect(page.locator("#face-boxes .face-box[data-face='2']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#matches-title")).to_have_text("Face 3: person3")
    page.keyboard.press("End")
    expect(page.locator("#matches-title")).to_have_text("Face 6: unknown")
    page.keyboard.press("Home")
    expect(page.locator("#matches-title")).to_have_text("Face 1: person1")
    # Tab leaves the faces for the candidates; Enter on a name opens that person's page.
    page.keyboard.press("Tab")
    expect(page.locator("#matches-list .match-name").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#view-subject")).to_be_visible()
    expect(page.locator("#subject-title")).to_have_text("person1")
    expect(page.locator("#subject-title")).to_be_focused()
    # Leaving the search dropped the photo and revoked its URL and the thumbnails'.
    assert page.locator("#photo").get_attribute("src") is None
    expect(page.locator("#subject-faces img[data-placeholder='false']")).to_have_count(3)
    assert live_object_urls(page) == 3  # only the three thumbnails on this page


@pytest.mark.dataset
def test_a_yale_probe_shows_its_subjects_name(pages: Callable[..., Any], served: FacedbServer, yale_dir: Path,
                                              tmp_path: Path) -> None:
    flat = tmp_path / "yale"
    flat.mkdir()
    subjects = ("subject02", "subject07", "subject11")
    for s in subjects:
        for cond in ("normal", "sleepy", "noglasses"):
            shutil.copy(yale_dir / f"{s}.{cond}", flat / f"{s}.{cond}")
    res = served.cli("import", str(flat), "--name-from", "prefix", "-q")
    assert res.returncode == 0, res.stderr.decode()
    try:
        page = pages()
        sign_in(page, served, served.keys["read"])
        for s, probe in (("subject07", "happy"), ("subject11", "surprised"), ("subject02", "glasses")):
            # Held-out photos (not enrolled), grey GIFs without a file extension.
            assert search(page, yale_dir / f"{s}.{probe}", faces=1) == [s]
            assert tags(page)[0].startswith(s)
            expect(page.locator("#matches-title")).to_have_text(f"Face 1: {s}")
            expect(page.locator("#matches-list .match-name").first).to_have_text(s)
        assert page.locator("#photo").evaluate("(img) => img.naturalWidth") == 320
    finally:
        for s in subjects:
            httpx.delete(served.url + f"/v1/subjects/{s}", headers=bearer(served.keys["write"]))


def test_boxes_follow_the_exif_orientation(pages: Callable[..., Any], served: FacedbServer,
                                           people: dict[str, list[Path]], tmp_path: Path) -> None:
    """A phone photo stored sideways with an EXIF Orientation tag: the box is on the upright face."""
    from PIL import Image

    upright = Image.open(people["person2"][0])
    stored = upright.rotate(90, expand=True)  # the pixels as a camera held sideways writes them
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90 degrees clockwise
    path = tmp_path / "sideways.jpg"
    stored.save(path, exif=exif, quality=95)
    page = pages()
    sign_in(page, served, served.keys["read"])
    assert search(page, path, faces=1) == ["person2"]
    size = page.locator("#photo").evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert size == [upright.width, upright.height]
    photo = page.locator("#photo").bounding_box()
    box = page.locator("#face-boxes .face-box").bounding_box()
    assert photo and box and inside(box, photo)
    # The face is in the middle of the crop (a margin of one face size on each side).
    cx = (box["x"] + box["width"] / 2 - photo["x"]) / photo["width"]
    cy = (box["y"] + box["height"] / 2 - photo["y"]) / photo["height"]
    assert 0.3 < cx < 0.7 and 0.3 < cy < 0.7, (cx, cy)


# -- people -----------------------------------------------------------------------------------------

def test_people_list_filter_and_one_persons_page_with_a_read_only_key(pages: Callable[..., Any],
                                                                       served: FacedbServer) -> None:
    page = pages()
    sign_in(page, served, served.keys["read"])
    page.click("#nav a[data-view='people']")
    expect(page.locator("#people-title")).to_be_focused()
    rows = page.locator("#people-rows tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#people-count")).to_have_text("4 people")
    first = rows.first.locator("td, th").all_inner_texts()
    assert first[:3] == ["person1", "3", "3"]
    screenshot(page, "people")
    page.fill("#people-filter", "SON3")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("th")).to_have_text("person3")
    expect(page.locator("#people-count")).to_have_text("1 of 4 people")
    page.fill("#people-filter", "nobody")
    expect(page.locator("#people-rows .empty")).to_contain_text("Nobody’s name contains “nobody”")
    page.fill("#people-filter", "")
    rows.first.locator("a").click()

    expect(page.locator("#subject-title")).to_have_text("person1")
    expect(page.locator("#subject-summary")).to_contain_text("3 photos · 3 faces · enrolled")
    faces = page.locator("#subject-faces img.thumb")
    expect(faces).to_have_count(3)
    expect(page.locator("#subject-faces img[data-placeholder='false']")).to_have_count(3)
    assert all(f.evaluate("(img) => img.naturalWidth > 0") for f in faces.all())
    expect(page.locator("#subject-faces .face-src").first).to_contain_text("person1_v")
    # A read key: the page says what it cannot do, and the write controls are off.
    note = page.locator("#view-subject .scope-note")
    expect(note).to_contain_text("read-key")
    expect(note).to_contain_text("need a key with write scope")
    expect(page.locator("#subject-delete")).to_be_disabled()
    expect(page.locator("#rename-input")).to_be_disabled()
    # Each face with its distance to the template; its remove and move buttons are off too.
    expect(page.locator("#subject-faces .face-dist")).to_have_count(3)
    expect(page.locator("#subject-faces .face-actions button")).to_have_count(6)
    for button in page.locator("#subject-faces .face-actions button").all():
        expect(button).to_be_disabled()
    screenshot(page, "subject")
    page.click("#nav a[data-view='enroll']")
    expect(page.locator("#view-enroll .scope-note")).to_be_visible()
    expect(page.locator("#enroll-name")).to_be_disabled()
    expect(page.locator("#enroll-files")).to_be_disabled()
    assert live_object_urls(page) == 0


def test_enroll_through_the_page_then_named_renamed_deleted_unknown(
        pages: Callable[..., Any], served: FacedbServer, people: dict[str, list[Path]], tmp_path: Path) -> None:
    page = pages()
    sign_in(page, served, served.keys["write"])
    probe = people["person5"][0]
    assert search(page, probe, faces=1) == ["unknown"]

    page.click("#nav a[data-view='enroll']")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    page.fill("#enroll-name", "Ada Lovelace")
    page.set_input_files("#enroll-files", [str(people["person5"][1]), str(notes), str(people["person5"][2])])
    expect(page.locator("#enroll-list li")).to_have_count(3)
    expect(page.locator("#enroll-summary")).to_have_text("3 photos ready to enroll.")
    page.click("#view-enroll details summary")
    page.fill("#enroll-metadata", '{"team": "blue"}')
    page.click("#enroll-submit")
    expect(page.locator("#enroll-summary")).to_have_text("Ada Lovelace: 2 enrolled, 1 rejected.", timeout=60_000)
    expect(page.locator("#status")).to_have_text("Ada Lovelace: 2 enrolled, 1 rejected.")
    states = page.locator("#enroll-list li").evaluate_all("(lis) => lis.map((li) => li.dataset.state)")
    assert states == ["enrolled", "rejected", "enrolled"]
    rejected = page.locator("#enroll-list li[data-state='rejected']")
    expect(rejected.locator(".file-name")).to_have_text("notes.txt")
    expect(rejected).to_have_attribute("data-reason", "not_an_image")
    expect(rejected.locator(".file-status")).to_contain_text("rejected: not an image")
    expect(page.locator("#enroll-list progress:visible")).to_have_count(0)
    screenshot(page, "enroll", full_page=True)

    # The new person is named in a search.
    page.click("#nav a[data-view='search']")
    assert search(page, probe, faces=1) == ["Ada Lovelace"]

    # ... is in the list, with a page of their own.
    page.click("#nav a[data-view='people']")
    page.fill("#people-filter", "ada")
    rows = page.locator("#people-rows tr")
    expect(rows).to_have_count(1)
    assert rows.first.locator("td, th").all_inner_texts()[:3] == ["Ada Lovelace", "2", "2"]
    rows.first.locator("a").click()
    expect(page.locator("#subject-title")).to_have_text("Ada Lovelace")
    expect(page.locator("#subject-meta")).to_contain_text("team")
    expect(page.locator("#subject-meta dd")).to_have_text("blue")
    # Uploaded photos are never kept: their faces show the placeholder.
    expect(page.locator("#subject-faces img[data-placeholder='true']")).to_have_count(2)

    # More photos for an existing person: the same file again is a duplicate, not a second face.
    page.click("#subject-add")
    expect(page.locator("#view-enroll")).to_be_visible()
    expect(page.locator("#enroll-name")).to_have_value("Ada Lovelace")
    page.set_input_files("#enroll-files", str(people["person5"][1]))
    page.click("#enroll-submit")
    expect(page.locator("#enroll-summary")).to_have_text("Ada Lovelace: 0 enrolled, 1 already enrolled, 0 rejected.")
    expect(page.locator("#enroll-list li")).to_have_attribute("data-state", "duplicate")
    page.click("#enroll-open")
    expect(page.locator("#subject-title")).to_have_text("Ada Lovelace")
    expect(page.locator("#subject-summary")).to_contain_text("2 photos · 2 faces")

    page.fill("#rename-input", "Ada King")
    page.press("#rename-input", "Enter")
    expect(page.locator("#subject-title")).to_have_text("Ada King")
    expect(page.locator("#status")).to_have_text("Renamed “Ada Lovelace” to “Ada King”.")

    # Delete asks first; cancel keeps the person.
    page.click("#subject-delete")
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#delete-desc")).to_contain_text("This removes Ada King, 2 photos and 2 faces")
    expect(page.locator("#delete-cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#subject-delete")).to_be_focused()
    expect(page.locator("#subject-title")).to_have_text("Ada King")
    page.click("#subject-delete")
    page.click("#delete-confirm")
    expect(page.locator("#view-people")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Deleted Ada King: 2 photos and 2 faces removed.")
    expect(page.locator("#people-rows .empty")).to_contain_text("Nobody’s name contains “ada”")
    page.fill("#people-filter", "")
    expect(page.locator("#people-rows tr")).to_have_count(4)
    assert "Ada King" not in page.locator("#people-rows").inner_text()

    page.click("#nav a[data-view='search']")
    assert search(page, probe, faces=1) == ["unknown"]


def test_a_write_with_a_read_only_key_is_refused_with_a_message(pages: Callable[..., Any], served: FacedbServer,
                                                                people: dict[str, list[Path]]) -> None:
    """Against a server without /v1/whoami the page cannot know the key's scope: it offers
    every control, and the server's 403 becomes a clear message."""
    page = pages()
    page.route("**/v1/whoami", lambda route: route.fulfill(
        status=404, json={"error": "Not Found", "reason": "http", "status": 404, "kind": "http"}))
    sign_in(page, served, served.keys["read"])
    expect(page.locator("#who-text")).to_have_text("Signed in as this key")
    page.click("#nav a[data-view='enroll']")
    page.fill("#enroll-name", "Not Allowed")
    page.set_input_files("#enroll-files", [str(people["person6"][0]), str(people["person6"][1])])
    page.click("#enroll-submit")
    expect(page.locator("#alert")).to_have_text(
        "Your key may not do this: API key 'read-key' has scope 'read'; this call needs 'write'.")
    states = page.locator("#enroll-list li").evaluate_all("(lis) => lis.map((li) => li.dataset.state)")
    assert states == ["stopped", "stopped"]
    expect(page.locator("#enroll-list li").first).to_contain_text("not enrolled: API key 'read-key' has scope 'read'")
    expect(page.locator("#enroll-list li").nth(1)).to_contain_text("not sent")
    expect(page.locator("#enroll-summary")).to_have_text("Not Allowed: 0 enrolled, 0 rejected, 2 not sent.")


# -- layout and privacy ----------------------------------------------------------------------------

def test_phone_width_layout(pages: Callable[..., Any], served: FacedbServer) -> None:
    page = pages(PHONE)
    sign_in(page, served, served.keys["read"])
    width = "() => document.documentElement.scrollWidth"
    assert page.evaluate(width) <= PHONE["width"]
    search(page, insightface_photos() / "t1.jpg", faces=6)
    photo = page.locator("#photo").bounding_box()
    assert photo and 300 <= photo["width"] <= PHONE["width"]
    assert all(inside(b.bounding_box(), photo) for b in page.locator("#face-boxes .face-box").all())
    # Tapping a name in the list under the photo selects that face; the candidates come below.
    page.locator("#face-list .face-item").nth(3).tap()
    expect(page.locator("#matches-title")).to_have_text("Face 4: person4")
    matches = page.locator("#matches").bounding_box()
    assert matches and matches["y"] >= photo["y"] + photo["height"] and matches["width"] <= PHONE["width"]
    assert page.evaluate(width) <= PHONE["width"]
    screenshot(page, "phone-search", full_page=True)
    for view in ("people", "enroll"):
        page.click(f"#nav a[data-view='{view}']")
        expect(page.locator(f"#view-{view}")).to_be_visible()
        if view == "people":
            expect(page.locator("#people-rows tr")).to_have_count(4)
        assert page.evaluate(width) <= PHONE["width"], view
    # Every control is labelled and at least 24 px tall, so it can be hit with a finger.
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#view-enroll input, #view-enroll button, #view-enroll select, #view-enroll textarea, #nav a, #sign-out'))
        .filter((e) => e.offsetParent)
        .filter((e) => e.getBoundingClientRect().height < 24).map((e) => e.id || e.textContent)""")
    assert small == []


@pytest.fixture
def long_name(served: FacedbServer, people: dict[str, list[Path]]) -> Iterator[str]:
    """LONG_NAME enrolled with person6's face (a stranger in the other tests: deleted after)."""
    enroll_over_http(served, LONG_NAME, people["person6"][0])
    try:
        yield LONG_NAME
    finally:
        delete_over_http(served, LONG_NAME)


def test_at_phone_width_no_view_is_wider_than_the_screen(pages: Callable[..., Any], served: FacedbServer,
                                                         long_name: str) -> None:
    page = pages(PHONE)
    sign_in(page, served, served.keys["write"])
    assert page_width(page) <= PHONE["width"]
    # The group photo, person6 named with 200 characters: no label touches another or leaves the page.
    assert search(page, insightface_photos() / "t1.jpg", faces=6)[5] == long_name
    labels = label_boxes(page)
    assert len(labels) == 6 and overlapping(labels) == [], labels
    assert all(r["x"] >= 0 and r["x"] + r["width"] <= PHONE["width"] for r in labels), labels
    page.locator("#face-list .face-item").nth(5).tap()
    expect(page.locator("#matches-title")).to_have_text(f"Face 6: {long_name}")
    assert page_width(page) <= PHONE["width"], "search"

    # People: a hidden column takes its header with it; the long name is cut, whole in its title.
    page.click("#nav a[data-view='people']")
    expect(page.locator("#people-rows tr")).to_have_count(5)
    expect(page.locator("#people-table thead th.date")).to_be_hidden()
    assert headers_without_a_column(page) == []
    link = page.locator("#people-rows a.subject-link").filter(has_text=long_name[:40])
    expect(link).to_have_attribute("title", long_name)
    assert link.evaluate("(a) => a.scrollWidth > a.clientWidth")
    assert page_width(page) <= PHONE["width"], "people"
    screenshot(page, "phone-people")

    link.click()
    expect(page.locator("#subject-title")).to_have_text(long_name)
    expect(page.locator("#subject-summary")).to_contain_text("1 photo · 1 face")
    assert page_width(page) <= PHONE["width"], "subject"
    page.click("#subject-delete")
    expect(page.locator("#delete-dialog")).to_be_visible()
    for part in ("#delete-dialog", "#delete-confirm", "#delete-title"):
        box = page.locator(part).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], part
    page.keyboard.press("Escape")
    page.click("#subject-add")
    expect(page.locator("#enroll-name")).to_have_value(long_name)
    assert page_width(page) <= PHONE["width"], "enroll"
    page.click("#sign-out")
    expect(page.locator("#view-signin")).to_be_visible()
    assert page_width(page) <= PHONE["width"], "sign-in"


def test_at_desktop_width_the_labels_show_names_and_never_overlap(pages: Callable[..., Any],
                                                                  served: FacedbServer, long_name: str) -> None:
    page = pages(WIDE)
    sign_in(page, served, served.keys["read"])
    assert search(page, insightface_photos() / "t1.jpg", faces=6)[5] == long_name
    expect(page.locator("#face-boxes.compact")).to_have_count(0)  # room for the names themselves
    labels = label_boxes(page)
    assert len(labels) == 6 and overlapping(labels) == [], labels
    photo = page.locator("#photo").bounding_box()
    assert photo and all(photo["x"] <= r["x"] and r["x"] + r["width"] <= photo["x"] + photo["width"] + 1
                         for r in labels), (photo, labels)
    assert page_width(page) <= WIDE["width"]
    # Narrowed to a phone's width, the same result is laid out again, the labels still apart.
    page.set_viewport_size(PHONE)
    page.wait_for_function("""() => document.querySelector('#photo').getBoundingClientRect().width < 390
        && Array.from(document.querySelectorAll('#face-boxes .face-tag, #face-boxes .face-key'))
             .every((e) => e.getBoundingClientRect().right <= 390)""")
    labels = label_boxes(page)
    assert len(labels) == 6 and overlapping(labels) == [], labels
    assert all(r["x"] >= 0 and r["x"] + r["width"] <= PHONE["width"] for r in labels), labels
    page.set_viewport_size(WIDE)
    page.click("#nav a[data-view='people']")
    expect(page.locator("#people-rows tr")).to_have_count(5)
    expect(page.locator("#people-table thead th.date")).to_be_visible()
    assert headers_without_a_column(page) == []
    assert page_width(page) <= WIDE["width"]


def test_crowded_faces_carry_numbers_and_the_list_names_them(pages: Callable[..., Any], served: FacedbServer,
                                                              people: dict[str, list[Path]], tmp_path: Path) -> None:
    """Twelve faces side by side on a strip, drawn 360 px wide: no room for twelve names, so the
    boxes carry their numbers (apart from each other) and the numbered list under the photo names them."""
    from PIL import Image

    crops = [Image.open(people[f"person{i}"][v]).convert("RGB") for v in (0, 1, 2) for i in range(1, 5)]
    height = min(c.height for c in crops)
    crops = [c.resize((round(c.width * height / c.height), height)) for c in crops]
    strip = Image.new("RGB", (sum(c.width for c in crops), height))
    x = 0
    for c in crops:
        strip.paste(c, (x, 0))
        x += c.width
    path = tmp_path / "strip.jpg"
    strip.save(path, quality=92)
    page = pages(PHONE)
    sign_in(page, served, served.keys["read"])
    names = search(page, path)
    assert len(names) >= 12 and names.count("person1") >= 3, names
    screenshot(page, "phone-crowded", full_page=True)
    expect(page.locator("#face-boxes.compact")).to_have_count(1)
    expect(page.locator("#photo-caption")).to_contain_text("The numbers on the faces are those of the list below")
    labels = label_boxes(page)
    assert len(labels) == len(names) and overlapping(labels) == [], labels
    keys = page.locator("#face-boxes .face-key").all_inner_texts()
    assert keys == [str(i) for i in range(1, len(names) + 1)]
    assert page.locator("#face-list .face-num").all_inner_texts() == keys
    # The box is still named for a screen reader; the list item with its number selects it.
    expect(page.locator("#face-boxes .face-box").first).to_have_accessible_name(re.compile(r"^Face 1: person\d"))
    assert page_width(page) <= PHONE["width"]


# -- addresses ------------------------------------------------------------------------------------

def test_every_view_has_an_address_the_back_button_and_a_reload_keep(pages: Callable[..., Any],
                                                                     served: FacedbServer,
                                                                     people: dict[str, list[Path]]) -> None:
    page = pages()
    sign_in(page, served, served.keys["read"])
    hash_ = "() => location.hash"
    assert page.evaluate(hash_) == "#search"
    page.click("#nav a[data-view='people']")
    expect(page.locator("#people-rows tr")).to_have_count(4)
    assert page.evaluate(hash_) == "#people"
    page.locator("#people-rows a", has_text="person3").click()
    expect(page.locator("#subject-title")).to_have_text("person3")
    assert page.evaluate(hash_) == "#people/person3"
    expect(page).to_have_title("person3 – facedb")
    # Back: the list; forward: the person again; a reload: the same person.
    page.go_back()
    expect(page.locator("#view-people")).to_be_visible()
    expect(page.locator("#people-rows tr")).to_have_count(4)
    page.go_forward()
    expect(page.locator("#subject-title")).to_have_text("person3")
    expect(page.locator("#subject-summary")).to_contain_text("3 photos · 3 faces")
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    expect(page.locator("#subject-title")).to_have_text("person3")
    expect(page.locator("#subject-summary")).to_contain_text("3 photos · 3 faces")
    page.click("#subject-back")
    expect(page.locator("#people-rows tr")).to_have_count(4)
    assert page.evaluate(hash_) == "#people"
    # A candidate of a search is a link to that person's page.
    page.click("#nav a[data-view='search']")
    search(page, people["person2"][0], faces=1)
    expect(page.locator("#matches-list .match-name").first).to_have_attribute("href", "#people/person2")
    page.click("#nav a[data-view='enroll']")
    assert page.evaluate(hash_) == "#enroll"
    # Signing out takes a person's name out of the address bar.
    page.click("#nav a[data-view='people']")
    page.locator("#people-rows a", has_text="person1").click()
    expect(page.locator("#subject-title")).to_have_text("person1")
    page.click("#sign-out")
    expect(page.locator("#view-signin")).to_be_visible()
    assert page.evaluate(hash_) == "#people"

    # A link copied from the page, opened in a new tab: the tab asks for the key (it is kept per
    # tab), then shows that person.
    other = pages()
    other.goto(served.url + "/" + subject_hash("person4"))
    other.wait_for_selector("body[data-ready='true']")
    expect(other.locator("#view-signin")).to_be_visible()
    other.fill("input[name='api_key']", served.keys["read"])
    other.press("input[name='api_key']", "Enter")
    expect(other.locator("#subject-title")).to_have_text("person4")
    expect(other.locator("#subject-faces img[data-placeholder='false']")).to_have_count(3)
    expect(other.locator("#nav a[data-view='people']")).to_have_attribute("aria-current", "page")
    # An address that names nobody says so.
    other.goto(served.url + "/" + subject_hash("Nobody Here"))
    expect(other.locator("#alert")).to_have_text("Nobody named “Nobody Here” is enrolled (any more).")
    # Typed by hand, with a "%" that is no escape: the name as typed, sent encoded.
    other.goto(served.url + "/#people/100%")
    expect(other.locator("#subject-title")).to_have_text("100%")
    expect(other.locator("#alert")).to_have_text("Nobody named “100%” is enrolled (any more).")


def test_names_with_url_characters_open_rename_and_delete(pages: Callable[..., Any], served: FacedbServer,
                                                          people: dict[str, list[Path]]) -> None:
    enroll_over_http(served, ODD_NAME, people["person5"][0])
    try:
        page = pages()
        sign_in(page, served, served.keys["write"])
        page.click("#nav a[data-view='people']")
        page.fill("#people-filter", "zoë")
        rows = page.locator("#people-rows tr")
        expect(rows).to_have_count(1)
        rows.first.locator("a").click()
        expect(page.locator("#subject-title")).to_have_text(ODD_NAME)
        expect(page.locator("#subject-summary")).to_contain_text("1 photo · 1 face")
        assert page.evaluate("() => location.hash") == subject_hash(ODD_NAME)
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        expect(page.locator("#subject-title")).to_have_text(ODD_NAME)
        expect(page.locator("#subject-summary")).to_contain_text("1 photo · 1 face")

        page.fill("#rename-input", ODD_RENAMED)
        page.press("#rename-input", "Enter")
        expect(page.locator("#status")).to_have_text(f"Renamed “{ODD_NAME}” to “{ODD_RENAMED}”.")
        expect(page.locator("#subject-title")).to_have_text(ODD_RENAMED)
        expect(page.locator("#subject-summary")).to_contain_text("1 photo · 1 face")  # found by its new name
        assert page.evaluate("() => location.hash") == subject_hash(ODD_RENAMED)
        names = [s["name"] for s in httpx.get(served.url + "/v1/subjects", headers=bearer(served.keys["read"])).json()]
        assert ODD_RENAMED in names and ODD_NAME not in names

        page.click("#subject-delete")
        page.click("#delete-confirm")
        expect(page.locator("#status")).to_have_text(f"Deleted {ODD_RENAMED}: 1 photo and 1 face removed.")
        expect(page.locator("#view-people")).to_be_visible()
        names = [s["name"] for s in httpx.get(served.url + "/v1/subjects", headers=bearer(served.keys["read"])).json()]
        assert ODD_RENAMED not in names and sorted(names) == list(ENROLLED)
    finally:
        delete_over_http(served, ODD_NAME)
        delete_over_http(served, ODD_RENAMED)


def test_a_name_no_address_can_hold_is_explained_not_sent_elsewhere(pages: Callable[..., Any],
                                                                    served: FacedbServer) -> None:
    """An older database may hold the names "." and "..": no URL path can carry them (the browser
    resolves them), so the page says how to rename them instead of sending a request elsewhere."""
    page = pages()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url))
    odd = [{"name": n, "images": 1, "faces": 1, "metadata": None, "created_at": None} for n in ("..", ".")]
    page.route("**/v1/subjects", lambda route: route.fulfill(json=odd))
    sign_in(page, served, served.keys["write"])
    page.click("#nav a[data-view='people']")
    expect(page.locator("#people-rows tr")).to_have_count(2)
    page.locator("#people-rows a").first.click()
    expect(page.locator("#subject-title")).to_have_text("..")
    expect(page.locator("#alert")).to_contain_text("facedb rename '..' NEW-NAME")
    api = [u.split(served.url, 1)[1] for u in sent if u.startswith(served.url + "/v1")]
    assert set(api) <= {"/v1/whoami", "/v1/subjects"}, api
    page.click("#nav a[data-view='enroll']")
    page.fill("#enroll-name", "..")
    page.click("#enroll-submit")
    expect(page.locator("#enroll-name-error")).to_have_text("“..” cannot be a name: choose another one.")


def unlabelled(page: Any) -> list[str]:
    """Controls on the page (shown or not) without a label, an ARIA name or button text."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('input, select, textarea, button'))
        .filter((e) => {
          if (e.labels && e.labels.length) return false;
          if (e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')) return false;
          return !(e.tagName === 'BUTTON' && e.textContent.trim());
        }).map((e) => e.outerHTML.slice(0, 80))""")


def test_every_control_has_a_label(pages: Callable[..., Any], served: FacedbServer,
                                   people: dict[str, list[Path]]) -> None:
    page = pages()
    sign_in(page, served, served.keys["write"])
    assert unlabelled(page) == []
    search(page, people["person2"][1], faces=1)  # face buttons, candidates
    expect(page.locator("#matches-list .match")).to_have_count(3)
    assert unlabelled(page) == []
    page.click("#nav a[data-view='enroll']")
    page.set_input_files("#enroll-files", [str(p) for p in people["person6"]])  # file rows, remove buttons
    expect(page.locator("#enroll-list li")).to_have_count(3)
    assert unlabelled(page) == []
    page.locator("#enroll-list .remove").first.click()
    expect(page.locator("#enroll-list li")).to_have_count(2)
    expect(page.locator("#enroll-summary")).to_have_text("2 photos ready to enroll.")
    page.click("#enroll-clear")
    expect(page.locator("#enroll-progress")).to_be_hidden()
    live = page.evaluate("""() => ({status: document.querySelector('#status').getAttribute('aria-live'),
        alert: document.querySelector('#alert').getAttribute('role')})""")
    assert live == {"status": "polite", "alert": "alert"}


def test_the_page_lets_go_of_photos_and_thumbnails(pages: Callable[..., Any], served: FacedbServer,
                                                   people: dict[str, list[Path]]) -> None:
    page = pages()
    sign_in(page, served, served.keys["read"])
    search(page, insightface_photos() / "t1.jpg", faces=6)
    expect(page.locator("#matches-list img[data-placeholder='false']")).to_have_count(3)
    assert live_object_urls(page) == 4  # the photo and three thumbnails
    # A new photo replaces the old one: the old URLs are revoked.
    search(page, people["person2"][0], faces=1)
    expect(page.locator("#matches-list img[data-placeholder='false']")).to_have_count(3)
    assert live_object_urls(page) == 4
    page.click("#nav a[data-view='people']")
    expect(page.locator("#people-rows tr")).to_have_count(4)
    assert live_object_urls(page) == 0
    assert page.locator("#photo").get_attribute("src") is None
    page.click("#nav a[data-view='search']")
    expect(page.locator("#search-result")).to_be_hidden()
    page.click("#sign-out")
    assert live_object_urls(page) == 0
    assert storage(page) == {"session": [], "local": [], "cookie": "", "idb": [], "caches": []}


def test_a_persons_faces_are_removed_and_moved_from_their_page(pages: Callable[..., Any], served: FacedbServer,
                                                               people: dict[str, list[Path]], tmp_path: Path) -> None:
    """A person's page: a grid of faces, each with its distance to the person's template; the
    wrong photo (someone else's) is the far one, is moved to its person, and a face is removed."""
    from PIL import Image

    def copy(src: Path, name: str) -> Path:  # other bytes: the strangers' own photos stay unenrolled
        out = tmp_path / name
        Image.open(src).convert("RGB").save(out, quality=89)
        return out

    owner, other = "Face Owner", "Face Other"
    mine = [copy(people["person6"][1], "own1.jpg"), copy(people["person6"][2], "own2.jpg")]
    wrong = copy(people["person5"][0], "wrong.jpg")
    try:
        for p in [*mine, wrong]:
            enroll_over_http(served, owner, p)
        enroll_over_http(served, other, copy(people["person5"][1], "other1.jpg"))
        page = pages()
        sign_in(page, served, served.keys["write"])
        page.goto(served.url + "/" + subject_hash(owner))
        page.wait_for_selector("body[data-ready='true']")
        expect(page.locator("#subject-title")).to_have_text(owner)
        cards = page.locator("#subject-faces li.face-card")
        expect(cards).to_have_count(3)
        expect(page.locator("#subject-faces .face-dist")).to_have_count(3)
        # The photo of someone else is the one far from the template.
        far = page.locator("#subject-faces li.face-card:has(.face-dist.far)")
        expect(far).to_have_count(1)
        expect(far.locator(".face-src")).to_have_text("wrong.jpg")
        screenshot(page, "subject-faces")

        far.get_by_role("button", name=re.compile("^Move")).click()
        expect(page.locator("#face-dialog")).to_be_visible()
        expect(page.locator("#face-move-to")).to_be_focused()
        page.fill("#face-move-to", "Nobody Here")
        page.click("#face-confirm")
        expect(page.locator("#face-dialog-error")).to_contain_text("Nobody named “Nobody Here” is enrolled")
        page.fill("#face-move-to", other)
        page.press("#face-move-to", "Enter")
        expect(page.locator("#status")).to_have_text(f"Moved face 3 (wrong.jpg) to {other}.")
        expect(page.locator("#face-dialog")).to_be_hidden()
        expect(cards).to_have_count(2)
        expect(page.locator("#subject-faces .face-dist.far")).to_have_count(0)
        moved = httpx.get(served.url + "/v1/faces", params={"subject": other}, headers=bearer(served.keys["read"])).json()
        assert sorted(basename["image"].rsplit("/", 1)[-1] for basename in moved["faces"]) == ["other1.jpg", "wrong.jpg"]

        cards.first.get_by_role("button", name=re.compile("^Remove")).click()
        expect(page.locator("#face-cancel")).to_be_focused()
        page.click("#face-cancel")
        expect(cards).to_have_count(2)
        cards.first.get_by_role("button", name=re.compile("^Remove")).click()
        page.click("#face-confirm")
        expect(page.locator("#status")).to_have_text("Removed face 1 (own1.jpg).")
        expect(cards).to_have_count(1)
        left = httpx.get(served.url + "/v1/faces", params={"subject": owner}, headers=bearer(served.keys["read"])).json()
        assert [x["image"].rsplit("/", 1)[-1] for x in left["faces"]] == ["own2.jpg"]
        # The removed photo is gone from search: its own bytes find the owner's other face, not itself.
        hit = httpx.post(served.url + "/v1/search", files=[("images", ("own1.jpg", mine[0].read_bytes()))],
                         data={"by": "face", "k": "1"}, headers=bearer(served.keys["read"]), timeout=120).json()
        match = hit["results"][0]["faces"][0]["matches"][0]
        assert match["image"] == "own2.jpg" and match["distance"] > 0.01
    finally:
        delete_over_http(served, owner)
        delete_over_http(served, other)
