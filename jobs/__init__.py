"""Background work (Huey with a SQLite broker): auto-annotation and training run here, never in the app
process, and never open DuckDB. See DESIGN.md, "Processes and who owns what"."""
