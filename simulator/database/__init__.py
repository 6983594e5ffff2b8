"""The database layer shared by the reference API (`simulator.api`) and `seed-db` (`simulator.seed`).

- `schema`: the one definition of every table (SQLAlchemy Core) and `create_schema`.
- `db`: how SQLite, PostgreSQL and MariaDB are opened (`make_engine`), write transactions with retry
  (`run_write`), SQLite checkpoints, and `PreparedStatement` (a statement compiled once).
- `passwords`: the stored ``accounts.password_hash`` format (argon2id at a chosen cost level), so a
  seeded account logs in through the API with the password it was seeded with.

Nothing here imports `simulator.api` or `simulator.seed`: both point down to this package.
"""
