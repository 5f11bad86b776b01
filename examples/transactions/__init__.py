"""The card-transactions example project (``tandem init`` copies this folder, this file left out)."""
