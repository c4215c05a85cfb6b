"""Methods: the contract reference implementations follow, their registry, shared metrics and the runner.

Import order keeps the catalog side light: :mod:`.contract` and :mod:`.glossary` are pure Python;
:mod:`.metrics`, :mod:`.data` and :mod:`.runner` import torch.
"""
