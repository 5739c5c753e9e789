"""Every refusal of ``simclr serve``'s API, each a JSON ``{"error": "one line", "status": N}`` without a
traceback: 401, 403, 404, 405, 413 (by Content-Length, by bytes counted, by a file's bytes or pixels, a
decompression bomb, too many files), 415, 422 and 500; and the server still serving after a thousand bad
requests in a row."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from .conftest import TOKEN, jpeg, make_client, png_bomb

CAT = "test/cat/0003.jpg"


def refused(answer, status: int, *words: str) -> str:
    """Check an error answer: the status, the JSON shape, one line, no traceback; returns the message."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error", "status"} and body["status"] == status, body
    message = body["error"]
    assert message and "\n" not in message and "Traceback" not in message and 'File "' not in message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def _image(name: str, data: bytes, kind: str = "image/jpeg"):
    return [("image", (name, data, kind))]


@pytest.fixture(scope="module")
def bombs():
    return {"bomb": png_bomb(20000, 20000), "large": png_bomb(2000, 1000)}


def test_writes_need_the_token(writable, client):
    files = _image("a.jpg", jpeg())
    refused(writable.post("/api/items", files=files), 401, "token")
    answer = writable.post("/api/items", files=files, headers={"Authorization": "Bearer wrong"})
    refused(answer, 401, "token")
    assert answer.headers["www-authenticate"] == "Bearer"
    refused(writable.post("/api/items", files=files, headers={"Authorization": TOKEN}), 401)  # no scheme
    refused(writable.delete("/api/items/3", headers={"Authorization": f"Basic {TOKEN}"}), 401)
    refused(writable.delete("/api/items/3", headers={"Authorization": "Bearer é".encode()}), 401)
    refused(client.post("/api/items", files=files, headers={"Authorization": f"Bearer {TOKEN}"}), 403,
            "started without a token")
    refused(client.delete("/api/items/3"), 403, "read-only")
    assert writable.get("/api/health").json()["images"] == 202  # nothing written


def test_the_token_is_checked_before_the_body_is_read(writable):
    """An upload without the token is refused before its body is read: a body far past the limit gets 401."""
    def endless():
        yield b"x" * 1000
        raise AssertionError("the body was read")

    answer = writable.post("/api/items", content=endless(), headers={"Content-Type": "multipart/form-data; "
                                                                     "boundary=x"})
    refused(answer, 401)


def test_unknown_ids_and_routes(client, writable):
    refused(client.get("/api/search", params={"id": 99999}), 404, "99999")
    refused(client.get("/api/search", params={"id": -1}), 404)
    refused(client.get("/api/images/202"), 404)
    refused(client.get("/api/duplicates", params={"id": 5000}), 404)
    refused(writable.delete("/api/items/5000", headers={"Authorization": f"Bearer {TOKEN}"}), 404)
    refused(client.get("/api/nothing"), 404, "/api/nothing")
    refused(client.get("/static/missing.js"), 404)
    refused(client.get("/static/../../etc/passwd"), 404)


def test_methods_not_allowed(client):
    refused(client.put("/api/health"), 405, "PUT")
    refused(client.delete("/api/search"), 405)
    answer = client.patch("/api/items/3")
    refused(answer, 405)
    assert "DELETE" in answer.headers["allow"]


def test_too_large_by_bytes(catalogue):
    with make_client(catalogue, max_bytes=50_000, max_files=2) as small:  # the request: <= 2 x 50 kB + 1 MiB
        refused(small.post("/api/search", files=_image("big.jpg", b"\xff" * 60_000)), 413, "'big.jpg'",
                "larger than")
        declared = small.post("/api/search", content=b"tiny", headers={
            "Content-Length": str(10**9), "Content-Type": "multipart/form-data; boundary=x"})
        refused(declared, 413, "larger than")  # refused by Content-Length, before reading anything

        def chunks():  # no Content-Length: the bytes are counted as they come
            for _ in range(300):
                yield b"\0" * 10_000

        counted = small.post("/api/search", content=chunks(), headers={
            "Content-Type": "multipart/form-data; boundary=x"})
        refused(counted, 413, "larger than")
        refused(small.post("/api/search", content=b"x", headers={"Content-Length": "abc"}), 400)
        three = [("image", (f"{i}.jpg", jpeg(), "image/jpeg")) for i in range(3)]
        refused(small.post("/api/search", files=three), 413, "more than 2 files")
        assert small.post("/api/search", files=three[:2]).status_code == 200


def test_too_large_by_pixels(client, bombs):
    """The pixels are counted from the header before decoding: a 20000x20000 PNG of a few KB (PIL's
    decompression bomb) and a 2-megapixel one (past the client's 1 megapixel) are refused."""
    assert len(bombs["bomb"]) < 100_000
    refused(client.post("/api/search", files=_image("bomb.png", bombs["bomb"], "image/png")), 413,
            "too many pixels")
    refused(client.post("/api/search", files=_image("large.png", bombs["large"], "image/png")), 413,
            "2000x1000", "1,000,000")
    mixed = _image("ok.jpg", jpeg()) + _image("large.png", bombs["large"], "image/png")
    refused(client.post("/api/search", files=mixed), 413, "large.png")


def test_not_an_image(client):
    refused(client.post("/api/search", files=_image("notes.txt", b"not a photo\n" * 20, "text/plain")), 415,
            "'notes.txt' is not an image")
    refused(client.post("/api/search", files=_image("empty.jpg", b"")), 415, "not an image")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    refused(client.post("/api/search", files=_image("x.eps", eps, "application/postscript")), 415)
    refused(client.post("/api/search", json={"image": "x"}), 415, "multipart/form-data")
    refused(client.post("/api/search", content=b"image=x",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)


def test_corrupt_images_and_bad_parameters(client):
    whole = jpeg((64, 64))
    refused(client.post("/api/search", files=_image("cut.jpg", whole[: len(whole) // 2])), 422, "'cut.jpg'",
            "damaged")
    noise = io.BytesIO()
    Image.effect_noise((64, 64), 50).save(noise, "PNG")
    refused(client.post("/api/search", files=_image("cut.png", noise.getvalue()[:500], "image/png")), 422,
            "damaged")
    for k in ("0", "-3", "abc", "1001", "2.5"):
        refused(client.post(f"/api/search?k={k}", files=_image("a.jpg", whole)), 422, "k")
        refused(client.get("/api/search", params={"id": 3, "k": k}), 422, "k")
    refused(client.get("/api/search"), 422, "id")
    refused(client.get("/api/search", params={"id": "x"}), 422, "id")
    refused(client.get("/api/images/x"), 422, "id")
    for size in ("0", "1025", "big"):
        refused(client.get("/api/images/3", params={"size": size}), 422, "size")
    for name, value in (("page", "0"), ("per_page", "0"), ("per_page", "500"), ("threshold", "2"),
                        ("threshold", "nan")):
        refused(client.get("/api/duplicates", params={name: value}), 422, name)
    refused(client.post("/api/search", files={"other": ("a.jpg", whole, "image/jpeg")}), 422, "image")
    refused(client.post("/api/search", data={"image": "text"},
                        files={"other": ("a.jpg", whole, "image/jpeg")}), 422, "files")


def test_internal_errors_keep_their_traceback_in_the_log(catalogue, caplog, monkeypatch):
    with make_client(catalogue) as client:
        def broken(*args, **kwargs):
            raise RuntimeError("secret detail of the server")

        monkeypatch.setattr(type(catalogue), "search_ids", broken)
        with caplog.at_level(logging.INFO, logger="simclr.serve"):
            message = refused(client.get("/api/search", params={"id": 3}), 500)
        assert message == "internal error"
        assert "secret detail" in caplog.text and "Traceback" in caplog.text  # in the server's log only
        assert any(r.getMessage().startswith("GET /api/search 500 ") and r.getMessage().endswith(" ms")
                   for r in caplog.records)


def test_one_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="simclr.serve"):
        client.get("/api/health")
        client.get("/api/nothing")
    lines = [r.getMessage() for r in caplog.records if r.name == "simclr.serve"]
    assert len(lines) == 2
    assert lines[0].startswith("GET /api/health 200 ") and lines[1].startswith("GET /api/nothing 404 ")


def test_a_thousand_bad_requests_then_a_good_one(client, bombs):
    """The server keeps serving after a thousand bad requests in a row, of every kind."""
    cut = jpeg((64, 64))[:300]
    bad = [lambda: client.post("/api/search", files=_image("t.txt", b"hello", "text/plain")),
           lambda: client.post("/api/search", files=_image("cut.jpg", cut)),
           lambda: client.post("/api/search", files=_image("bomb.png", bombs["bomb"], "image/png")),
           lambda: client.post("/api/search?k=0", files=_image("a.jpg", cut)),
           lambda: client.get("/api/search", params={"id": 10**9}),
           lambda: client.get("/api/images/-5"),
           lambda: client.get("/api/duplicates", params={"per_page": -1}),
           lambda: client.delete("/api/items/1"),
           lambda: client.put("/api/search"),
           lambda: client.post("/api/search", content=b"garbage", headers={
               "Content-Type": "multipart/form-data; boundary=x"})]
    statuses = {bad[i % len(bad)]().status_code for i in range(1000)}
    assert statuses == {400, 403, 404, 405, 413, 415, 422}
    good = client.post("/api/search?k=3", files=_image("cat.jpg", _cat(client)))
    assert good.status_code == 200 and good.json()["results"][0][0]["path"] == CAT
    assert client.get("/api/health").json()["status"] == "ok"


def _cat(client) -> bytes:
    """The catalogue's image of test/cat/0003.jpg, as a PNG (lossless: it embeds as the item does)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(client.get("/api/images/65").content)).save(out, "PNG")
    return out.getvalue()
