"""The database: kb.db's schema, writing studies, trials and tags, and the atomic build and import.

:mod:`.schema` is the one place tables are defined. :mod:`.collect` gathers records from
files and source pages, merged by study (for a build, on disk: :mod:`.staging`); :mod:`.build`
writes them through :mod:`.atomic` (a temporary file renamed over kb.db) in bounded batches,
:mod:`.derive` tagging them in worker processes meanwhile.
"""
