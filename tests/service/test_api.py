"""The JSON API of ``simclr serve`` (FastAPI's TestClient over a real collection): every route's answer.
The refusals are in test_refusals.py, the command in test_serve_command.py."""

from __future__ import annotations

import io
import time

from PIL import Image

from .conftest import TOKEN, embed_collection, jpeg, make_client

HIT_KEYS = {"rank", "id", "path", "label", "class", "score"}
COPIES = {"test/airplane/0000.jpg", "test/airplane/copy1.jpg", "test/airplane/copy2.jpg"}


def _upload(*paths):
    return [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_page_static_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css"), ("index.html", "text/html")):
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"]
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/health", "/api/search", "/api/duplicates", "/api/images/{id}", "/api/items",
            "/api/items/{id}"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/search"]["post"]["requestBody"]["content"]


def test_health(client, catalogue):
    assert client.get("/api/health").json() == {
        "status": "ok", "images": 202, "index": "exact", "dim": catalogue.dim, "writable": False,
        "classes": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}


def test_search_by_image(client, service_data, query_image):
    copy = service_data / "test" / "airplane" / "copy1.jpg"
    answer = client.post("/api/search?k=5", files=_upload(query_image, copy))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [len(r) for r in results] == [5, 5]
    best = results[0][0]
    assert set(best) == HIT_KEYS and best["rank"] == 1 and best["path"] == "test/cat/0003.jpg"
    assert best["class"] == "cat" and best["label"] == 3 and abs(best["score"] - 1) < 1e-4
    assert [h["rank"] for h in results[0]] == [1, 2, 3, 4, 5]
    assert all(a["score"] >= b["score"] for a, b in zip(results[0], results[0][1:]))
    assert {h["path"] for h in results[1][:3]} == COPIES
    again = client.post("/api/search?k=5", files=_upload(query_image)).json()["results"]
    assert [h["id"] for h in again[0]] == [h["id"] for h in results[0]]  # the same query, the same ids
    assert len(client.post("/api/search", files=_upload(query_image)).json()["results"][0]) == 10  # k=10


def test_search_by_pictures_of_any_mode(client):
    """A PNG with transparency and a grayscale GIF are read as the network's RGB."""
    files = []
    for kind, picture in (("PNG", Image.new("RGBA", (20, 20), (0, 0, 255, 128))),
                          ("GIF", Image.new("L", (30, 10), 90))):
        out = io.BytesIO()
        picture.save(out, kind)
        files.append(("image", (f"x.{kind.lower()}", out.getvalue(), f"image/{kind.lower()}")))
    results = client.post("/api/search?k=3", files=files).json()["results"]
    assert [len(r) for r in results] == [3, 3]


def test_search_by_id(client, catalogue):
    answer = client.get("/api/search", params={"id": 65, "k": 12})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == {"id": 65, "path": "test/cat/0003.jpg", "label": 3, "class": "cat"}
    hits = body["results"][0]
    assert len(hits) == 12 and 65 not in [h["id"] for h in hits]  # the item leaves its own results
    assert [h["id"] for h in hits] == [h.id for h in catalogue.search_ids([65], 12)[0]]
    copies = client.get("/api/search", params={"id": 0, "k": 2}).json()["results"][0]
    assert {h["path"] for h in copies} == COPIES - {"test/airplane/0000.jpg"}


def test_duplicates(client):
    answer = client.get("/api/duplicates")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["page"] == 1 and body["threshold"] == 0.99 and body["groups_total"] >= 1
    assert body["pages"] == -(-body["groups_total"] // 20)
    everything = client.get("/api/duplicates", params={"per_page": 200}).json()["groups"]
    assert everything[:20] == body["groups"] and len(everything) == body["groups_total"]
    sizes = [len(g) for g in everything]
    assert sizes == sorted(sizes, reverse=True) and min(sizes) >= 2  # largest first
    copies = [g for g in everything if "test/airplane/copy1.jpg" in {h["path"] for h in g}]
    assert len(copies) == 1 and COPIES <= {h["path"] for h in copies[0]}  # the image and its two copies
    group = copies[0]
    assert [h["rank"] for h in group] == list(range(1, len(group) + 1))
    assert all(set(h) == HIT_KEYS for h in group)
    second = client.get("/api/duplicates", params={"per_page": 2, "page": 2}).json()
    assert second["page"] == 2 and second["pages"] == -(-body["groups_total"] // 2) and second["groups"] == \
        everything[2:4]
    strict = client.get("/api/duplicates", params={"threshold": 0.99999}).json()
    assert strict["threshold"] == 0.99999 and [{h["path"] for h in g} for g in strict["groups"]] == [COPIES]
    past = client.get("/api/duplicates", params={"page": 999}).json()  # past the end: the last page
    assert past["page"] == past["pages"] and past["groups"]


def test_duplicates_of_an_item(client):
    body = client.get("/api/duplicates", params={"id": 20}).json()
    found = body["duplicates"]
    assert body["id"] == 20 and COPIES - {"test/airplane/copy1.jpg"} <= {h["path"] for h in found}
    assert 20 not in [h["id"] for h in found] and all(set(h) == HIT_KEYS for h in found)
    strict = client.get("/api/duplicates", params={"id": 20, "threshold": 0.99999}).json()["duplicates"]
    assert {h["path"] for h in strict} == COPIES - {"test/airplane/copy1.jpg"}


def test_duplicates_computed_in_the_background(catalogue):
    """A large collection's groups are computed in a background thread: 202 until they are ready."""
    with make_client(catalogue, sync_duplicates=0) as client:
        first = client.get("/api/duplicates")
        seen = [first.status_code]
        deadline = time.monotonic() + 60
        while seen[-1] == 202 and time.monotonic() < deadline:
            assert first.json() == {"status": "computing"} or seen[-1] == 200
            time.sleep(0.05)
            first = client.get("/api/duplicates")
            seen.append(first.status_code)
        assert seen[-1] == 200 and first.json()["groups_total"] >= 1
        assert set(seen) <= {200, 202}
        # one computation however many requests asked while it ran (each request has its own snapshot)
        assert len(client.app.state.service.duplicates.jobs) == 1


def test_images(client):
    full = client.get("/api/images/65")
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert full.headers["cache-control"] == "no-cache" and full.headers["etag"]
    again = client.get("/api/images/65", headers={"If-None-Match": full.headers["etag"]})
    assert again.status_code == 304 and not again.content  # unchanged: not drawn again
    other = client.get("/api/images/66", headers={"If-None-Match": full.headers["etag"]})
    assert other.status_code == 200 and other.headers["etag"] != full.headers["etag"]
    assert Image.open(io.BytesIO(full.content)).size == (32, 32)
    small = client.get("/api/images/65", params={"size": 16})
    assert Image.open(io.BytesIO(small.content)).size == (16, 16)
    assert Image.open(io.BytesIO(client.get("/api/images/65?size=1024").content)).size == (32, 32)


def test_add_search_and_delete_items(writable, query_image):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    files = [("image", ("new.jpg", jpeg((48, 40), (10, 200, 10)), "image/jpeg")),
             ("image", (query_image.name, query_image.read_bytes(), "image/jpeg"))]
    added = writable.post("/api/items", files=files, headers=headers)
    assert added.status_code == 201, added.text
    items = added.json()["items"]
    assert [i["id"] for i in items] == [202, 203] and all(i["path"].startswith("uploads/") for i in items)
    assert writable.get("/api/health").json()["images"] == 204
    shown = writable.get(f"/api/images/{items[0]['id']}")
    assert shown.status_code == 200 and Image.open(io.BytesIO(shown.content)).size == (48, 40)
    twin = writable.get("/api/search", params={"id": 203, "k": 1}).json()["results"][0][0]
    assert twin["path"] == "test/cat/0003.jpg" and twin["score"] > 0.9999  # the upload found its original
    query = writable.get("/api/search", params={"id": 202, "k": 1}).json()["query"]
    assert query["label"] is None and query["class"] is None

    assert writable.delete("/api/items/203", headers=headers).json() == {"deleted": 203}
    assert writable.get("/api/health").json()["images"] == 203
    assert writable.get("/api/images/203").status_code == 404
    assert writable.get("/api/search", params={"id": 203}).status_code == 404
    assert writable.delete("/api/items/203", headers=headers).status_code == 404
    assert writable.get("/api/health").json()["writable"] is True


def test_the_collection_changed_on_disk_is_answered(collection_copy, checkpoint, service_data):
    """Another process replaces the collection (embeds the train split into the same folder) or deletes an
    item: the next request is answered from the new one."""
    from simclr.retrieval.catalogue import open_catalogue

    with make_client(open_catalogue(collection_copy)) as client:
        assert client.get("/api/health").json()["images"] == 202
        assert client.get("/api/search", params={"id": 65, "k": 1}).status_code == 200
        open_catalogue(collection_copy).delete(65)  # another writer
        assert client.get("/api/health").json()["images"] == 201
        assert client.get("/api/search", params={"id": 65, "k": 1}).status_code == 404
        embed_collection(checkpoint, service_data, collection_copy, split="train")
        assert client.get("/api/health").json()["images"] == 500
        hit = client.get("/api/search", params={"id": 65, "k": 1}).json()["query"]
        assert hit["path"].startswith("train/")
        groups = client.get("/api/duplicates").json()
        assert groups["groups"] and all(h["path"].startswith("train/") for g in groups["groups"] for h in g)


def test_a_collection_that_cannot_be_reopened_keeps_the_last_one(catalogue, caplog, monkeypatch):
    from simclr.errors import InputError

    def half_written():
        raise InputError("collection.json is not readable JSON")

    with make_client(catalogue) as client:
        monkeypatch.setattr(catalogue, "refresh", half_written)
        assert client.get("/api/health").json()["images"] == 202
        assert "could not be reopened (still serving the last one)" in caplog.text


def test_one_background_computation_at_a_time():
    """Thresholds asked while a computation runs wait for it rather than starting more (a client cannot
    start any number of all-against-all searches)."""
    import threading

    from simclr.service.app import _Duplicates

    release, started = threading.Event(), []

    def slow(threshold):
        started.append(threshold)
        release.wait(10)
        return [threshold]

    class Large:  # a catalogue too large to group at once
        generation = 1
        duplicates = staticmethod(slow)

        def __len__(self) -> int:
            return 100

    jobs, cat = _Duplicates(sync_below=0), Large()
    assert jobs.groups(cat, 0.9) is None
    assert all(jobs.groups(cat, t) is None for t in (0.91, 0.92, 0.93))
    release.set()
    for _ in range(100):
        if jobs.jobs[(1, 0.9)].done():
            break
        time.sleep(0.01)
    assert started == [0.9] and jobs.groups(cat, 0.9) == [0.9]
