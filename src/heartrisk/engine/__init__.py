"""Batch jobs on an existing distributed engine (Daft, locally or on a Ray cluster).

The local engine reads a window of ``heart`` into this process, which is right up to a few hundred
thousand rows (288k rows end to end in 5.6 s; Daft 7.5 s on the same rows, DESIGN.md). Past that
memory grows with the table, so ``HEARTRISK_ENGINE=daft`` (or ``HEARTRISK_RAY_ADDRESS``) hands the
reading and the scoring to Daft: partition by partition, each worker loading the champion once. The
writes stay the store's own conflict-checked insert
(:meth:`heartrisk.store.table.FeatureGroup.insert_stream`).

- :mod:`.runner` picks Daft's runner (native or Ray) and the object-store settings workers read with;
- :mod:`.scoring` is the scoring plan and the per-worker scorer;
- :mod:`.aggregates` computes the monitoring counts over ``heart_predictions`` with the same engine.
"""
