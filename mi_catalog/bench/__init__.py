"""The benchmark: every localizing method scored against ground-truth mechanisms, every steerer scored on
its intended change and its side effects, and what each costs (``mi-catalog bench``).

* :mod:`.expectations` — the ground-truth mechanisms (computed by the bench itself, causally or by
  construction; never taken from a scored method);
* :mod:`.scoring` — precision@k, rank of the true units, AUROC, faithfulness, the steering score;
* :mod:`.cost` — forward/backward passes counted on the model, not self-reported;
* :mod:`.run` — the tracks (locate, steer, cost) over methods × tasks × seeds → rows;
* :mod:`.rows` — the JSON row contract and loading a result (no torch);
* :mod:`.render` — table / Markdown / SVG (no torch); :mod:`.site` — the site's Benchmark pages (no torch);
* :mod:`.cli` — the ``mi-catalog bench`` command.

Importing this package is light: torch is imported only by the modules that run models.
"""
