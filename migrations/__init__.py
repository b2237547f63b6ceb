"""kodr's Alembic environment: the only way the store's schema changes.

Run it with ``kodr db upgrade`` (or :func:`store.database.upgrade`); developers
can also use ``alembic`` with the repository's ``alembic.ini``.
"""
