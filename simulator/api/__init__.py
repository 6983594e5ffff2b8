"""The reference registration API behind ``prakerja-sim serve``: the FastAPI app and its routes, the
store (one interface over SQLite, PostgreSQL and MariaDB), the schema, passwords, the simulated
Dukcapil registry, OTPs, uploads, selection, admin and health routes, and the helpers that start it
for tests (docs/api.md, docs/architecture.md 3.2).
"""
