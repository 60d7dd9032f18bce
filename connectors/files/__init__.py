"""The file sink: a contract's deliveries as one JSON-lines file per UTC day, for
administrations whose batch jobs read files.

:mod:`.day_files` keeps the files (naming, atomic replacement, each delivery once, what each
holds and until when), :mod:`.deletions` audits each deletion in the sink's own chain, and
:mod:`.sink` reads the delivery topic, commits only what is on disk and deletes what expired.
"""
