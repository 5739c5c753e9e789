"""``simclr serve``: a web service (FastAPI) and page over an embedded collection (a catalogue): search by an
uploaded photo or by an item, the near-duplicate groups, the catalogue's images, and adding or deleting items
with a token. :mod:`~simclr.service.uploads` reads uploaded images safely; :mod:`~simclr.service.app` builds
the application.

It needs the 'serve' extra (fastapi, python-multipart; uvicorn to run it): importing it without them raises
:class:`~simclr.errors.MissingExtra` (an ImportError) saying so."""

from simclr.errors import require

require(("fastapi", "multipart"), "simclr.service", "serve")
