"""This project's feature catalogs (listed under ``catalogs`` in tandem.yaml)."""
