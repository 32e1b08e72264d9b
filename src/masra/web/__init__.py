"""``masra serve``: a small web page over a trained checkpoint (optional extra ``masra[web]``).

A person uploads a video (or picks one from the server's ``--videos`` folder), types a query and gets the
top moments, listed and drawn on a timeline under the saliency curve; clicking a moment plays the video from
its start. The server is FastAPI + uvicorn; the page is plain HTML/JS served from ``masra/web/static``.

Modules: :mod:`.limits` (what the server accepts), :mod:`.hosts` (the ``Host`` names it answers to),
:mod:`.media` (the ``--videos`` folder, uploads, video checks), :mod:`.jobs` (grounding jobs run one at a
time on a worker thread, polled by the page), :mod:`.service` (the grounder with a per-video feature cache),
:mod:`.app` (the HTTP routes).
"""
