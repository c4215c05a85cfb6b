"""Task data shipped with the package (pure Python; torch only in :mod:`mi_catalog.data.measure`)."""
