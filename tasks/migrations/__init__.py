"""Alembic's migration scripts for the job store, shipped inside the package.

``tasks.migrate`` configures Alembic programmatically with this folder as its
``script_location``, so an installed wheel can upgrade a database with no alembic.ini.
Revisions are named ``NNNN_what`` (``0001_initial``, ``0002_...``) and chain in order.
"""
