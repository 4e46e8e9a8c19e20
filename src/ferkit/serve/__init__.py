"""The REST API and web page (`ferkit serve`): see `ferkit.serve.app` and docs/serve.md.

    from ferkit.serve import create_app
    app = create_app("runs/exp1")     # a FastAPI app; `uvicorn.run(app)` serves it

Needs fastapi, uvicorn and python-multipart (dependencies of ferkit).
"""

from ferkit.serve.app import create_app, model_meta

__all__ = ["create_app", "model_meta"]
