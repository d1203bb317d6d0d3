"""Tagging: a record in, its tags (each with the sentence that justifies it) out.

Pure and database-free, like parsing: :func:`tag_record` reads only the record and the
vocabulary. Writing tags into kb.db is :mod:`ingest.db.tags`.
"""

from .tagger import Evidence, TagResult, tag_record
from .vocabulary import KINDS, Vocabulary, VocabularyError, load_vocabulary, read_vocabulary

__all__ = ["KINDS", "Evidence", "TagResult", "Vocabulary", "VocabularyError", "load_vocabulary",
           "read_vocabulary", "tag_record"]
