"""A FastAPI service over the SDK: see ``docs/fastapi.md``.

Run it with ``INVETERATE_API_KEY=... uvicorn examples.fastapi_app.app:app``.
"""
